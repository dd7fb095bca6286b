"""fastMRI datalists and slice loading from small HDF5 files in fastMRI's layout."""

import json

import h5py
import numpy as np
import pytest
import torch

from monai_inr.data.fastmri import (
    LoadFastMRISliced,
    build_fastmri_datalist,
    fastmri_slice_items,
    load_fastmri_slice,
    read_fastmri_info,
)
from monai_inr.errors import InputError
from monai_inr.transforms.functional import centred_fft

HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <encoding>
    <encodedSpace><matrixSize><x>32</x><y>24</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>280</x><y>140</y><z>4.5</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>16</x><y>16</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>140</x><y>140</y><z>3.0</z></fieldOfView_mm></reconSpace>
  </encoding>
</ismrmrdHeader>"""


def _images(n_slices, h=32, w=24, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n_slices, h, w)) + 1j * rng.random((n_slices, h, w))).astype(np.complex64)


def _write(path, acquisition, patient, n_slices=4, multicoil=False, seed=0):
    img = _images(n_slices, seed=seed)
    k = centred_fft(torch.from_numpy(img), (-2, -1)).numpy()
    if multicoil:
        k = np.stack([k, 0.5 * k], axis=1)
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=k)
        f.create_dataset("reconstruction_rss", data=np.abs(img[:, 8:24, 4:20]).astype(np.float32))
        f.create_dataset("ismrmrd_header", data=HEADER.encode())
        f.attrs["acquisition"] = acquisition
        f.attrs["patient_id"] = patient
        f.attrs["max"] = float(np.abs(img).max())
    return img


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "knee"
    root.mkdir()
    imgs = {}
    for i, pid in enumerate(["p1", "p2", "p3", "p4"]):
        imgs[(pid, "fs")] = _write(root / f"file{i}a.h5", "CORPDFS_FBK", pid, seed=2 * i)
        imgs[(pid, "pd")] = _write(root / f"file{i}b.h5", "CORPD_FBK", pid, seed=2 * i + 1)
    _write(root / "file9.h5", "CORPD_FBK", "p9")  # unpaired
    _write(root / "file8a.h5", "CORPDFS_FBK", "p8", n_slices=3)
    _write(root / "file8b.h5", "CORPD_FBK", "p8", n_slices=5)  # different slice counts
    return root, imgs


def test_pairs_by_patient(folder, tmp_path):
    root, _ = folder
    out = tmp_path / "fastmri.json"
    dl = build_fastmri_datalist(root, val_fraction=0.25, test_fraction=0.25, output_file=out)
    items = dl["training"] + dl["validation"] + dl["test"]
    assert sorted(i["subject"] for i in items) == ["p1", "p2", "p3", "p4"]
    for i in items:
        assert read_fastmri_info(i["image"])["acquisition"] == "CORPDFS_FBK"
        assert read_fastmri_info(i["reference"])["acquisition"] == "CORPD_FBK"
        assert i["num_slices"] == 4
    assert "p8" in dl["metadata"]["skipped"]
    assert json.loads(out.read_text(encoding="utf-8"))["test"] == dl["test"]
    slices = fastmri_slice_items(dl["test"], "central", count=2)
    assert [s["slice_index"] for s in slices] == [1, 2] * len(dl["test"])
    assert [s["slice_index"] for s in fastmri_slice_items(dl["test"][:1], [0, 3, 9])] == [0, 3]


def test_info_and_header_geometry(folder):
    root, _ = folder
    info = read_fastmri_info(root / "file0a.h5")
    assert info["num_slices"] == 4 and info["kspace_shape"] == (4, 32, 24)
    assert info["geometry"]["reconSpace"]["matrix"] == [16.0, 16.0, 1.0]
    assert info["patient_id"] == "p1" and "reconstruction_rss" in info["reconstructions"]


def test_slices_complex_magnitude_and_reconstruction(folder):
    root, imgs = folder
    img = imgs[("p1", "fs")]
    arr, aff = load_fastmri_slice(root / "file0a.h5", 2, "kspace", "complex", crop=None)
    assert arr.shape == (2, 32, 24)
    np.testing.assert_allclose(arr[0] + 1j * arr[1], img[2], atol=1e-5)  # centred unitary inverse FFT
    np.testing.assert_allclose(np.diag(aff)[:3], [140 / 16, 140 / 16, 3.0])
    assert aff[2, 3] == pytest.approx(2 * 3.0)
    cropped, _ = load_fastmri_slice(root / "file0a.h5", 2, "kspace", "magnitude", crop=(16, 16))
    np.testing.assert_allclose(cropped[0], np.abs(img[2, 8:24, 4:20]), atol=1e-5)
    rec, _ = load_fastmri_slice(root / "file0a.h5", 1, "reconstruction", "magnitude")
    np.testing.assert_allclose(rec[0], np.abs(img[1, 8:24, 4:20]), atol=1e-6)
    load = LoadFastMRISliced(["image"], output="magnitude", crop=(16, 16))
    d = load({"image": str(root / "file0a.h5"), "slice_index": 0})
    assert d["image"].shape == (1, 16, 16) and d["image"].affine.shape == (4, 4)


def test_multicoil_and_errors(folder, tmp_path):
    root, _ = folder
    mc = tmp_path / "mc.h5"
    img = _write(mc, "CORPD_FBK", "x", multicoil=True)
    arr, _ = load_fastmri_slice(mc, 0, "kspace", "magnitude", crop=None)
    np.testing.assert_allclose(arr[0], np.sqrt(1.25) * np.abs(img[0]), rtol=1e-4)
    with pytest.raises(InputError, match="multi-coil"):
        load_fastmri_slice(mc, 0, "kspace", "complex")
    with pytest.raises(InputError, match="magnitude images"):
        load_fastmri_slice(mc, 0, "reconstruction", "complex")
    with pytest.raises(InputError, match="outside its 4 slices"):
        load_fastmri_slice(mc, 4)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5"):
        read_fastmri_info(bad)
    with pytest.raises(InputError, match="no patient has both"):
        build_fastmri_datalist(root, target="AXT2", reference="CORPD_FBK")
    with pytest.raises(InputError, match="no fastMRI"):
        (tmp_path / "empty").mkdir()
        build_fastmri_datalist(tmp_path / "empty")
    with pytest.raises(InputError, match="slice_index"):
        LoadFastMRISliced(["image"])({"image": str(mc)})
