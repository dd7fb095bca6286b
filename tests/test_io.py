import nibabel as nib
import numpy as np
import pytest

from monai_inr.errors import InputError
from monai_inr.io import check_volume, load_volume, save_nifti


def _write(path, data, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


def test_round_trip_keeps_affine(tmp_path):
    affine = np.diag([1.5, 2.0, 3.0, 1.0])
    affine[:3, 3] = [-10, 5, 7]
    data = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    path = save_nifti(data, affine, tmp_path / "out" / "x.nii.gz")
    arr, aff = load_volume(path)
    np.testing.assert_allclose(arr, data)
    np.testing.assert_allclose(aff, affine)
    assert [p.name for p in path.parent.iterdir()] == ["x.nii.gz"]  # no temporary file left behind


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(InputError, match="nope.nii.gz: file not found"):
        load_volume(tmp_path / "nope.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(InputError, match="bad.nii.gz: not a readable NIfTI"):
        load_volume(bad)


@pytest.mark.parametrize(
    "data, message",
    [
        (np.ones((4, 5)), "expected a 3D image but got 2D"),
        (np.random.rand(4, 5, 6, 3), "expected a 3D image but got 4D"),
        (np.where(np.eye(4)[..., None] > 0, np.nan, 1.0) * np.ones((4, 4, 4)), "NaN or Inf"),
        (np.full((4, 4, 4), 3.0), "constant"),
    ],
)
def test_bad_content_names_the_file(tmp_path, data, message):
    path = _write(tmp_path / "img.nii.gz", data.astype(np.float32))
    with pytest.raises(InputError, match=message) as err:
        load_volume(path)
    assert "img.nii.gz" in str(err.value)


def test_singleton_axes_are_squeezed():
    assert check_volume(np.random.rand(1, 4, 5, 6)).shape == (4, 5, 6)
    assert check_volume(np.random.rand(4, 5, 6, 1)).shape == (4, 5, 6)


def test_a_result_written_meanwhile_by_another_run_is_never_replaced(tmp_path):
    """Two runs pass the pre-flight before either writes: the later one stops in one sentence, the earlier result stays
    (``overwrite=False``), and a group of files is published only when every one of them is complete."""
    from monai_inr.errors import InputError
    from monai_inr.io import write_atomic, write_atomic_group

    target = tmp_path / "scan_sr.nii.gz"
    write_atomic(target, lambda p: p.write_bytes(b"first run"), overwrite=False)
    with pytest.raises(InputError, match="written by another run while this one computed") as err:
        write_atomic(target, lambda p: p.write_bytes(b"second run"), overwrite=False)
    assert "\n" not in str(err.value) and target.read_bytes() == b"first run"
    write_atomic(target, lambda p: p.write_bytes(b"replaced"), overwrite=True)
    assert target.read_bytes() == b"replaced"

    def fail(p):
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic_group([(tmp_path / "t1w_sr.nii.gz", lambda p: p.write_bytes(b"t1")), (tmp_path / "t2w_sr.nii.gz", fail)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan_sr.nii.gz"]  # neither published, no temporaries
    # a group whose second name another run took meanwhile publishes nothing (not the first file alone)
    (tmp_path / "t2w_sr.nii.gz").write_bytes(b"the other run's")
    with pytest.raises(InputError, match="t2w_sr.nii.gz: was written by another run"):
        write_atomic_group([(tmp_path / "t1w_sr.nii.gz", lambda p: p.write_bytes(b"t1")),
                            (tmp_path / "t2w_sr.nii.gz", lambda p: p.write_bytes(b"t2"))], overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan_sr.nii.gz", "t2w_sr.nii.gz"]
    assert (tmp_path / "t2w_sr.nii.gz").read_bytes() == b"the other run's"
