import numpy as np
import pytest

from monai_inr.errors import InputError
from preprocessing.dicom import read_dicom_series, write_dicom_series
from preprocessing.pipeline import read_t2w
from preprocessing.rigid import rotation_matrix

pytestmark = pytest.mark.xdist_group("preprocessing")  # shares the phantom/ANTs caches


def test_series_round_trip_keeps_geometry(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.uniform(0, 100, (12, 14, 6)).astype(np.float32)
    aff = np.eye(4)
    aff[:3, :3] = rotation_matrix((1, 2, 3), 15) @ np.diag([1.0, 1.0, 2.0])  # oblique 1 x 1 x 2 mm
    aff[:3, 3] = [-20.0, 30.0, -40.0]
    write_dicom_series(arr, aff, tmp_path / "t2w")
    back, back_aff, info = read_dicom_series(tmp_path / "t2w")
    assert info["n_files"] == 6
    assert back.shape == arr.shape
    assert np.allclose(back_aff, aff, atol=1e-4)  # LPS (DICOM/ITK) -> RAS handled
    assert np.corrcoef(back.ravel(), arr.ravel())[0, 1] > 0.9999
    arr2, aff2, meta = read_t2w(tmp_path / "t2w")
    assert meta["format"] == "DICOM" and np.allclose(aff2, aff, atol=1e-4)


def test_missing_or_unreadable_series(tmp_path):
    with pytest.raises(InputError, match="nope: DICOM series directory not found"):
        read_dicom_series(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no readable DICOM series"):
        read_dicom_series(tmp_path / "empty")
    bad = tmp_path / "garbage"
    bad.mkdir()
    for i in range(3):
        (bad / f"IM{i}.dcm").write_bytes(b"DICM" + bytes(200))
    with pytest.raises(InputError, match="garbage"):
        read_dicom_series(bad)
    with pytest.raises(InputError, match="file.nii.gz: file not found"):
        read_t2w(tmp_path / "file.nii.gz")
