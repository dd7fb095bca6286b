"""IXI T2/PD datalists from small files in IXI's real naming and NIfTI format."""

import json

import nibabel as nib
import numpy as np
import pytest

from monai_inr.data.ixi import build_ixi_datalist
from monai_inr.errors import InputError


def _write(path, shape=(6, 7, 5), affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([1.2, 0.9, 1.2, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.random.rand(*shape).astype(np.float32), affine), str(path))


@pytest.fixture
def ixi_folder(tmp_path):
    root = tmp_path / "ixi"
    subjects = ["IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212", "IXI014-HH-1236", "IXI015-HH-1258"]
    for s in subjects:
        _write(root / "IXI-T2" / f"{s}-T2.nii.gz")
        _write(root / "IXI-PD" / f"{s}-PD.nii.gz")
        _write(root / "IXI-T1" / f"{s}-T1.nii.gz", shape=(5, 5, 5))
    _write(root / "IXI-T2" / "IXI020-Guys-0700-T2.nii.gz")  # no PD
    (root / "IXI-T2" / "notes.txt").write_text("not an image")
    return root, subjects


def test_pairs_target_and_reference_by_subject(ixi_folder, tmp_path):
    root, subjects = ixi_folder
    out = tmp_path / "ixi.json"
    dl = build_ixi_datalist(root, val_fraction=0.2, test_fraction=0.2, seed=0, output_file=out)
    items = dl["training"] + dl["validation"] + dl["test"]
    assert sorted(i["subject"] for i in items) == sorted(subjects)
    assert len(dl["test"]) == 1 and len(dl["validation"]) == 1
    for i in items:
        assert i["image"].endswith(f"{i['subject']}-T2.nii.gz") and i["reference"].endswith(f"{i['subject']}-PD.nii.gz")
    assert dl["metadata"]["unpaired"] == ["IXI020-Guys-0700"]
    assert json.loads(out.read_text(encoding="utf-8"))["training"] == dl["training"]
    # reproducible, and other contrast pairs work
    assert build_ixi_datalist(root, val_fraction=0.2, test_fraction=0.2, seed=0)["test"] == dl["test"]
    t1 = build_ixi_datalist(root, target="T1", reference="PD", check_grids=False)
    assert all(i["image"].endswith("-T1.nii.gz") for i in t1["training"])


def test_grid_mismatch_is_skipped_or_an_error(ixi_folder):
    root, subjects = ixi_folder
    _write(root / "IXI-PD" / f"{subjects[0]}-PD.nii.gz", shape=(6, 7, 4))
    dl = build_ixi_datalist(root)
    assert subjects[0] in dl["metadata"]["skipped"]
    assert subjects[0] not in {i["subject"] for i in dl["training"] + dl["validation"] + dl["test"]}
    with pytest.raises(InputError, match="different voxel grids"):
        build_ixi_datalist(root, on_mismatch="error")
    with pytest.raises(InputError, match="different voxel grids"):
        # T1 files have another shape for every subject
        build_ixi_datalist(root, target="T1", reference="PD")


def test_errors(tmp_path, ixi_folder):
    root, _ = ixi_folder
    with pytest.raises(InputError, match="not found"):
        build_ixi_datalist(tmp_path / "nothing")
    with pytest.raises(InputError, match="no subject has both"):
        build_ixi_datalist(root, target="T2", reference="MRA")
    with pytest.raises(InputError, match="different contrasts"):
        build_ixi_datalist(root, target="PD", reference="PD")
