import json

import numpy as np
import pytest

from monai_inr.errors import InputError
from preprocessing.grid import ReconGrid
from preprocessing.rawdata import RawData, check_trajectory_range, read_raw, read_raw_meta, write_raw
from preprocessing.reconstruction import reconstruct
from preprocessing.trajectory import da_radial_trajectory

pytestmark = pytest.mark.xdist_group("preprocessing")  # shares the phantom/ANTs caches


def _raw(coils=1, spokes=20, samples=16, kmax=0.5):
    tr = da_radial_trajectory(spokes, samples, kmax=kmax)
    rng = np.random.default_rng(0)
    shape = (coils, spokes, samples) if coils > 1 else (spokes, samples)
    data = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    return RawData(kspace=data, trajectory=tr.k, times=tr.times,
                   meta={"grid": {"shape": [8, 8, 8], "spacing_mm": [10.0, 10.0, 10.0]}, "subject": "sub-01"})


@pytest.mark.parametrize("ext", [".h5", ".npz"])
@pytest.mark.parametrize("coils", [1, 3])
def test_round_trip(tmp_path, ext, coils):
    raw = _raw(coils)
    raw.dcf = np.ones(raw.trajectory.shape[:-1])
    path = write_raw(raw, tmp_path / f"r{ext}")
    back = read_raw(path)
    assert np.array_equal(back.kspace, raw.kspace) and np.allclose(back.trajectory, raw.trajectory)
    assert np.allclose(back.times, raw.times) and np.allclose(back.dcf, 1)
    assert back.n_coils == coils and back.coil_data().shape == (coils, 20, 16)
    assert back.meta["subject"] == "sub-01" and back.meta["trajectory_units"] == "1/cm"
    assert read_raw_meta(path)["subject"] == "sub-01"
    assert not list(tmp_path.glob(".*partial*"))  # no temporary left behind
    with pytest.raises(InputError, match="already exists"):
        write_raw(raw, path)


def test_units_are_converted(tmp_path):
    raw = _raw()
    raw.meta["trajectory_units"] = "1/mm"
    raw.trajectory = raw.trajectory / 10.0
    back = read_raw(write_raw(raw, tmp_path / "mm.npz"))
    assert np.allclose(back.trajectory, _raw().trajectory, atol=1e-6)
    raw = _raw()
    raw.meta["trajectory_units"] = "cycles/voxel"  # k * spacing with a 10 mm grid
    raw.trajectory = raw.trajectory * 1.0
    back = read_raw(write_raw(raw, tmp_path / "cv.npz"))
    assert np.allclose(back.trajectory, _raw().trajectory, atol=1e-5)
    raw.meta["trajectory_units"] = "rad/s"
    write_raw(raw, tmp_path / "bad.npz")
    with pytest.raises(InputError, match="bad.npz.*unknown trajectory_units"):
        read_raw(tmp_path / "bad.npz")


def test_length_mismatch_is_reported(tmp_path):
    raw = _raw()
    path = tmp_path / "mismatch.npz"
    np.savez(path, kspace=raw.kspace[:, :15], trajectory=raw.trajectory, meta=np.array("{}"))
    with pytest.raises(InputError, match=r"mismatch\.npz: trajectory/data length mismatch"):
        read_raw(path)


def test_nan_samples_are_reported(tmp_path):
    raw = _raw()
    raw.kspace[3, 4] = np.nan
    path = tmp_path / "nan.h5"
    import h5py

    with h5py.File(path, "w") as f:
        f["kspace"] = raw.kspace
        f["trajectory"] = raw.trajectory
    with pytest.raises(InputError, match=r"nan\.h5: the k-space data contain 1 NaN or Inf samples"):
        read_raw(path)
    raw = _raw()
    raw.trajectory[0, 0, 0] = np.inf
    np.savez(tmp_path / "nantraj.npz", kspace=raw.kspace, trajectory=raw.trajectory)
    with pytest.raises(InputError, match="nantraj.npz: the trajectory contains 1 NaN"):
        read_raw(tmp_path / "nantraj.npz")


def test_missing_unreadable_and_incomplete_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_raw(tmp_path / "absent.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match="junk.h5: not a readable raw k-space file"):
        read_raw(tmp_path / "junk.h5")
    np.savez(tmp_path / "nokspace.npz", trajectory=np.zeros((4, 3)))
    with pytest.raises(InputError, match="nokspace.npz: no 'kspace' array"):
        read_raw(tmp_path / "nokspace.npz")
    (tmp_path / "raw.mat").write_bytes(b"")
    with pytest.raises(InputError, match="unknown raw file type"):
        read_raw(tmp_path / "raw.mat")


def test_trajectory_outside_the_kspace_range(tmp_path):
    raw = _raw(kmax=0.8)  # a 10 mm grid only holds |k| <= 0.5 1/cm
    path = write_raw(raw, tmp_path / "far.h5")
    back = read_raw(path)
    with pytest.raises(InputError, match=r"far\.h5: the trajectory reaches \|k\| = 0\.8.*outside the k-space range"):
        reconstruct(back, ReconGrid((8, 8, 8), (10.0, 10.0, 10.0)))
    check_trajectory_range(back.trajectory, (6.0, 6.0, 6.0), "ok")  # a finer grid accepts it


def test_real_imaginary_pairs_are_accepted(tmp_path):
    raw = _raw()
    pairs = np.stack([raw.kspace.real, raw.kspace.imag], -1)
    np.savez(tmp_path / "pairs.npz", data=pairs, k=raw.trajectory, meta=np.array(json.dumps({})))
    back = read_raw(tmp_path / "pairs.npz")
    assert np.allclose(back.kspace, raw.kspace)
