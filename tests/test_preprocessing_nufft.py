import numpy as np
import pytest

from preprocessing import nufft as nufft_mod
from preprocessing.nufft import NufftOperator, available_backends, resolve_backend

pytestmark = pytest.mark.xdist_group("preprocessing")  # shares the phantom/ANTs caches

try:  # finufft is an optional backend: its tests skip cleanly without it
    import finufft  # noqa: F401

    HAS_FINUFFT = True
except ImportError:
    HAS_FINUFFT = False


def _problem(shape=(16, 16, 16), m=500, seed=0):
    rng = np.random.default_rng(seed)
    om = rng.uniform(-np.pi, np.pi, (m, 3))
    x = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    y = rng.standard_normal(m) + 1j * rng.standard_normal(m)
    return om, x, y


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("shape", [(16, 16, 16), (15, 16, 17)])
@pytest.mark.parametrize("kernel_width, tol", [(6, 1e-4), (4, 2e-3)])
def test_pynufft_matches_direct_dft(shape, kernel_width, tol):
    om, x, y = _problem(shape)
    ref = NufftOperator(om, shape, backend="dft")
    op = NufftOperator(om, shape, backend="pynufft", kernel_width=kernel_width)
    assert _rel(op.forward(x), ref.forward(x)) < tol
    assert _rel(op.adjoint(y), ref.adjoint(y)) < tol  # true adjoint: pynufft's 1/prod(Kd) undone


def test_dft_convention_is_centred_at_n_over_2():
    om = np.array([[0.3, -0.2, 0.1]])
    x = np.zeros((4, 5, 6), complex)
    x[2, 2, 3] = 1  # the voxel N // 2 has zero phase
    assert np.allclose(NufftOperator(om, x.shape, "dft").forward(x), 1)
    x[...] = 0
    x[3, 2, 3] = 1  # one voxel further along axis 0: exp(-i om_0)
    assert np.allclose(NufftOperator(om, x.shape, "dft").forward(x), np.exp(-0.3j))


@pytest.mark.parametrize("backend", ["dft", "pynufft"] + (["finufft"] if HAS_FINUFFT else []))
def test_adjointness(backend):
    om, x, y = _problem((12, 10, 8), m=300, seed=1)
    op = NufftOperator(om, x.shape, backend=backend, kernel_width=6)
    lhs = np.vdot(y, op.forward(x))
    rhs = np.vdot(op.adjoint(y), x)
    assert abs(lhs - rhs) / abs(lhs) < 1e-4


def test_chunked_plans_equal_unchunked():
    om, x, y = _problem((12, 12, 12), m=900, seed=2)
    whole = NufftOperator(om, x.shape, backend="pynufft", kernel_width=4)
    chunked = NufftOperator(om, x.shape, backend="pynufft", kernel_width=4, max_plan_points=200 * 4**3)
    assert len(chunked._chunks) == 5 and not chunked.keep_plans  # re-planned per call: bounded memory
    assert _rel(chunked.forward(x), whole.forward(x)) < 1e-5
    assert _rel(chunked.adjoint(y), whole.adjoint(y)) < 1e-5


@pytest.mark.skipif(not HAS_FINUFFT, reason="finufft (optional backend) is not installed")
def test_finufft_agrees_with_pynufft_and_dft():
    om, x, y = _problem((16, 15, 17), m=500, seed=3)
    ref = NufftOperator(om, x.shape, backend="dft")
    fi = NufftOperator(om, x.shape, backend="finufft", eps=1e-9)
    py = NufftOperator(om, x.shape, backend="pynufft", kernel_width=6)
    assert _rel(fi.forward(x), ref.forward(x)) < 1e-6
    assert _rel(fi.adjoint(y), ref.adjoint(y)) < 1e-6
    assert _rel(py.forward(x), fi.forward(x)) < 1e-4
    assert _rel(py.adjoint(y), fi.adjoint(y)) < 1e-4


def test_auto_backend_falls_back_to_pynufft(monkeypatch):
    def missing():
        raise ImportError("no finufft")

    monkeypatch.setattr(nufft_mod, "_import_finufft", missing)
    assert resolve_backend("auto") == "pynufft"
    with pytest.raises(ImportError, match="finufft"):
        resolve_backend("finufft")
    assert "pynufft" in available_backends() and "dft" in available_backends()


def test_invalid_frequencies_and_shapes():
    with pytest.raises(ValueError, match="pi"):
        NufftOperator(np.array([[4.0, 0, 0]]), (8, 8, 8), "dft")
    with pytest.raises(ValueError, match="NaN"):
        NufftOperator(np.array([[np.nan, 0, 0]]), (8, 8, 8), "dft")
    op = NufftOperator(np.zeros((3, 3)), (8, 8, 8), "dft")
    with pytest.raises(ValueError):
        op.forward(np.zeros((8, 8, 7)))
    with pytest.raises(ValueError):
        op.adjoint(np.zeros(4))
    with pytest.raises(ValueError):
        resolve_backend("cufinufft")
