"""Synthetic thick-slice contrast pairs for the multi-contrast INR evaluation."""

import nibabel as nib
import numpy as np
import pytest

from monai_inr import coords
from monai_inr.data.multi_contrast import build_multi_contrast_dataset, load_multi_contrast_datalist
from monai_inr.errors import InputError


def test_pairs_keep_the_fov_with_thick_axial_and_coronal_slices(tmp_path):
    path = build_multi_contrast_dataset(tmp_path, num_subjects=1, spacing=8.0, slice_factor=2.0, lesion=0.0)
    (item,) = load_multi_contrast_datalist(path)
    gt = nib.load(item["label1"])
    assert nib.load(item["label2"]).shape == gt.shape == nib.load(item["mask"]).shape
    c1, c2 = nib.load(item["contrast1"]), nib.load(item["contrast2"])
    n = np.asarray(gt.shape)
    assert c1.shape == (n[0], n[1], round(n[2] / 2)) and c2.shape == (n[0], round(n[1] / 2), n[2])
    sp = coords.spacing_from_affine(gt.affine)
    np.testing.assert_allclose(coords.spacing_from_affine(c1.affine), sp * n / np.asarray(c1.shape), rtol=1e-5)
    for img in (c1, c2):  # same field of view as the ground truth
        for edge_lr, edge_gt in ((np.full(3, -0.5), np.full(3, -0.5)), (np.asarray(img.shape) - 0.5, n - 0.5)):
            np.testing.assert_allclose(
                coords.voxel_to_world(edge_lr, img.affine), coords.voxel_to_world(edge_gt, gt.affine), atol=1e-4
            )
    # box profile: a thick axial slice is the mean of the ground-truth voxels it covers
    hr = gt.get_fdata()
    np.testing.assert_allclose(c1.get_fdata()[..., 0], hr[..., 0:2].mean(-1), atol=1e-5)
    # idempotent: an up-to-date datalist is reused, nothing rewritten
    before = {k: _mtime(v) for k, v in item.items() if k != "subject"}
    assert build_multi_contrast_dataset(tmp_path, num_subjects=1, spacing=8.0, slice_factor=2.0, lesion=0.0) == path
    assert before == {k: _mtime(v) for k, v in item.items() if k != "subject"}


def _mtime(p):
    import os

    return os.stat(p).st_mtime_ns


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="orientation"):
        build_multi_contrast_dataset(tmp_path, num_subjects=1, spacing=8.0, orientations=("axial", "oblique"))
    with pytest.raises(InputError, match="slice_factor"):
        build_multi_contrast_dataset(tmp_path, num_subjects=1, spacing=8.0, slice_factor=0.5)
    with pytest.raises(InputError, match="num_subjects"):
        build_multi_contrast_dataset(tmp_path, num_subjects=0)
    with pytest.raises(InputError, match="datalist not found"):
        load_multi_contrast_datalist(tmp_path / "none.json")
