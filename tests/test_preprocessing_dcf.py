import numpy as np
import pytest

from preprocessing.dcf import analytic_dcf, compute_dcf, shell_dcf, window
from preprocessing.trajectory import da_radial_trajectory

pytestmark = pytest.mark.xdist_group("preprocessing")  # shares the phantom/ANTs caches


def test_shell_dcf_is_the_sampled_volume():
    tr = da_radial_trajectory(200, 80, kmax=1.0, p=0.4)
    w = shell_dcf(tr.k)
    r = np.linalg.norm(tr.k, axis=-1)
    step = r[0, -1] - r[0, -2]
    assert w.sum() == pytest.approx(4 / 3 * np.pi * (1.0 + step / 2) ** 3, rel=1e-6)
    assert np.all(w >= 0)


def test_shell_dcf_matches_analytic_density_adapted_weights():
    tr = da_radial_trajectory(100, 400, kmax=1.0, p=0.4)
    w = shell_dcf(tr.k)[0]
    a = analytic_dcf(tr.k, k0=0.4)[0]
    r = np.linalg.norm(tr.k[0], axis=-1)
    inner = (r > 0.05) & (r < 0.35)
    outer = (r > 0.45) & (r < 0.98)
    # |k|^2 in the constant-gradient part, k0^2 beyond (ratios relative to one reference sample)
    ratio = np.divide(w, a, out=np.zeros_like(w), where=a > 0)
    assert np.allclose(ratio[inner], np.median(ratio[inner]), rtol=0.05)
    assert np.allclose(ratio[outer], np.median(ratio[inner]), rtol=0.05)
    assert np.allclose(w[outer], w[outer].mean(), rtol=0.02)


def test_analytic_and_dispatch():
    tr = da_radial_trajectory(50, 40, kmax=0.5)
    for method, kw in (("radial", {}), ("da", {"k0": 0.2})):
        w = compute_dcf(tr.k, method, **kw)
        assert w.shape == (50, 40)
        assert w.sum() == pytest.approx(4 / 3 * np.pi * 0.5**3, rel=1e-6)
    flat = compute_dcf(tr.k.reshape(-1, 3), "shells")  # flat trajectories fall back to |k|^2
    assert flat.shape == (2000,)
    with pytest.raises(ValueError):
        compute_dcf(tr.k, "da")
    with pytest.raises(ValueError):
        compute_dcf(tr.k, "voronoi-ish")


def test_windows():
    k = np.array([[0, 0, 0], [0, 0, 0.5], [0, 0, 1.0]], dtype=float)
    assert np.allclose(window(k, 1.0, "none"), 1)
    assert np.allclose(window(k, 1.0, "hamming"), [1.0, 0.54, 0.08])
    f = window(k, 1.0, "fermi", fermi_cutoff=0.9, fermi_width=0.05)
    assert f[0] == pytest.approx(1, abs=1e-6) and f[1] == pytest.approx(1, abs=1e-3) and f[2] < 0.2
    with pytest.raises(ValueError):
        window(k, 1.0, "kaiser")
