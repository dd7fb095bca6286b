"""Nexus-INR data: synthetic BraTS-like pairs, the BraTS2020 datalist builder, z-scoring and paired patches."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_inr import coords
from monai_inr.data.nexus import (
    brats_to_nexus_labels,
    build_brats_datalist,
    build_nexus_dataset,
    phantom_to_nexus_labels,
)
from monai_inr.engines.checks import check_nexus_datalist
from monai_inr.errors import InputError
from monai_inr.transforms import NexusZScored, RandNexusPatchd

KEYS = ("t1w", "t2w", "t1w_lr", "t2w_lr", "label", "mask")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("nexus_data")
    return build_nexus_dataset(out, num_train=2, num_val=1, num_test=1, spacing=8.0, lesion=1.0)


def _edges(img):
    lo = coords.voxel_to_world(np.full(3, -0.5), img.affine)
    return [lo, coords.voxel_to_world(np.asarray(img.shape) - 0.5, img.affine)]


def _check_item_layout(item):
    """Keys, the padding rule and the thick-slice scans' shapes and world field of view of one datalist item."""
    assert set(item) == {"subject", *KEYS}
    hr, l1, l2 = nib.load(item["t1w"]), nib.load(item["t1w_lr"]), nib.load(item["t2w_lr"])
    # HR padded so z is a multiple of 2 and y a multiple of 4; LR thick along z (x2) and y (x4)
    assert hr.shape[2] % 2 == 0 and hr.shape[1] % 4 == 0
    assert l1.shape == (hr.shape[0], hr.shape[1], hr.shape[2] // 2)
    assert l2.shape == (hr.shape[0], hr.shape[1] // 4, hr.shape[2])
    for lr in (l1, l2):  # the same field of view in world space
        for a, b in zip(_edges(hr), _edges(lr)):
            np.testing.assert_allclose(a, b, atol=1e-4)
    return hr, l1, l2


def test_synthetic_dataset_layout_geometry_and_labels(dataset):
    doc = json.loads(Path(dataset).read_text(encoding="utf-8"))
    assert [len(doc[s]) for s in ("training", "validation", "test")] == [2, 1, 1]
    seeds = {sid: v["seed"] for sid, v in doc["metadata"]["subjects"].items()}
    assert len(set(seeds.values())) == 4
    item = doc["training"][0]
    hr, l1, _ = _check_item_layout(item)
    # box profile: every T1w LR slice is the mean of the two HR slices it covers
    h, l = hr.get_fdata(), l1.get_fdata()
    np.testing.assert_allclose(l, 0.5 * (h[..., 0::2] + h[..., 1::2]), rtol=1e-5, atol=1e-5)
    lab = np.asarray(nib.load(item["label"]).dataobj)
    assert set(np.unique(lab).tolist()) <= {0, 1, 2} and (lab == 1).any() and (lab == 2).any()
    assert nib.load(item["mask"]).shape == hr.shape


def test_dataset_is_idempotent_and_validates_arguments(dataset, tmp_path):
    before = Path(dataset).stat().st_mtime_ns
    again = build_nexus_dataset(Path(dataset).parent, num_train=2, num_val=1, num_test=1, spacing=8.0, lesion=1.0)
    assert again == dataset and Path(dataset).stat().st_mtime_ns == before
    with pytest.raises(InputError, match="integers"):
        build_nexus_dataset(tmp_path, num_train=1, num_val=0, num_test=0, spacing=8.0, slice_factors=(2.5, 4.0))
    with pytest.raises(InputError, match="at least one training"):
        build_nexus_dataset(tmp_path, num_train=0)


def test_label_mappings():
    np.testing.assert_array_equal(phantom_to_nexus_labels(np.array([0, 1, 2, 3, 4, 5])), [0, 0, 0, 0, 2, 1])
    np.testing.assert_array_equal(brats_to_nexus_labels(np.array([0, 1, 2, 4])), [0, 1, 2, 1])
    with pytest.raises(InputError, match="unexpected BraTS label values"):
        brats_to_nexus_labels(np.array([0, 3]))


def _write_brats(root: Path, n: int = 4, shape=(12, 10, 9)):
    rng = np.random.default_rng(0)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for i in range(1, n + 1):
        sid = f"BraTS20_Training_{i:03d}"
        d = root / sid
        d.mkdir(parents=True)
        brain = np.zeros(shape, np.float32)
        brain[2:-2, 2:-2, 2:-2] = 1.0
        for key in ("t1", "t1ce", "t2", "flair"):
            img = nib.Nifti1Image(brain * rng.uniform(1, 2, shape).astype(np.float32), affine)
            nib.save(img, str(d / f"{sid}_{key}.nii.gz"))
        seg = np.zeros(shape, np.uint8)
        seg[4:6, 4:6, 4:6] = 1
        seg[6, 4:6, 4:6] = 4
        seg[3, 3:7, 3:7] = 2
        nib.save(nib.Nifti1Image(seg, affine), str(d / f"{sid}_seg.nii.gz"))


def test_brats_datalist_builder(tmp_path):
    root = tmp_path / "brats"
    _write_brats(root)
    doc = build_brats_datalist(root, tmp_path / "out", num_val=1, num_test=1, pad_shape=None)
    assert [len(doc[s]) for s in ("training", "validation", "test")] == [2, 1, 1]
    subjects = sorted(it["subject"] for s in ("training", "validation", "test") for it in doc[s])
    assert subjects == [f"BraTS20_Training_{i:03d}" for i in range(1, 5)]
    item = doc["training"][0]
    hr = nib.load(item["t1w"])
    assert hr.shape == (12, 12, 10)  # y padded 10 -> 12 (x4), z 9 -> 10 (x2)
    assert nib.load(item["t1w_lr"]).shape == (12, 12, 5) and nib.load(item["t2w_lr"]).shape == (12, 3, 10)
    lab = np.asarray(nib.load(item["label"]).dataobj)
    assert int((lab == 1).sum()) == 8 + 4 and int((lab == 2).sum()) == 16
    # the original voxel (0, 0, 0) sits at the same world position after padding
    src = nib.load(str(root / item["subject"] / f"{item['subject']}_t1.nii.gz"))
    ijk = coords.world_to_voxel(coords.voxel_to_world(np.zeros(3), src.affine), hr.affine)
    np.testing.assert_allclose(ijk, [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(hr.get_fdata()[:, 1:11, 0:9], src.get_fdata(), rtol=1e-6)
    assert (tmp_path / "out" / "datalist.json").is_file()
    # paper padding (240 x 240 x 160) too small for nothing, but must be a multiple of the factors
    with pytest.raises(InputError, match="pad_shape"):
        build_brats_datalist(root, tmp_path / "out2", num_val=1, num_test=1, pad_shape=(12, 12, 11))
    (root / "BraTS20_Training_002" / "BraTS20_Training_002_seg.nii.gz").unlink()
    with pytest.raises(InputError, match="missing BraTS20_Training_002_seg"):
        build_brats_datalist(root, tmp_path / "out3", num_val=1, num_test=1, pad_shape=None)
    with pytest.raises(InputError, match="cannot give"):
        build_brats_datalist(root, tmp_path / "out4", num_val=2, num_test=2)


def _loaded(item):
    d = {k: torch.from_numpy(np.asarray(nib.load(item[k]).dataobj, dtype=np.float32))[None] for k in KEYS}
    return d


def test_zscore_uses_lr_statistics_for_lr_and_hr(dataset):
    item = json.loads(Path(dataset).read_text(encoding="utf-8"))["training"][0]
    d = _loaded(item)
    z = NexusZScored()(d)
    for lr, hr in (("t1w_lr", "t1w"), ("t2w_lr", "t2w")):
        mean, std = z[lr + "_stats"].tolist()
        assert abs(float(z[lr].mean())) < 1e-4 and abs(float(z[lr].std(unbiased=False)) - 1) < 1e-4
        torch.testing.assert_close(z[hr], (d[hr] - mean) / std, rtol=1e-5, atol=1e-5)


def test_paired_patches_cover_one_field_of_view(dataset):
    item = json.loads(Path(dataset).read_text(encoding="utf-8"))["training"][0]
    d = _loaded(item)
    hr_shape = d["t1w"].shape[1:]
    for flip in (0.0, 1.0):
        t = RandNexusPatchd(hr_patch_size=(8, 8, 8), num_coords=100, min_foreground=0.5, flip_prob=flip)
        t.set_random_state(3)
        s = t(d)
        assert s["t1w_lr"].shape == (1, 8, 8, 4) and s["t2w_lr"].shape == (1, 8, 2, 8)
        assert s["coord"].shape == (100, 3) and s["target"].shape == (100, 2) and s["seg"].shape == (100,)
        assert float(s["foreground"]) >= 0.5
        # reconstruct the HR patch values at the query points and the LR patch from the HR patch (box profile)
        ijk = torch.round(coords.normalized_to_voxel(s["coord"], (8, 8, 8))).long()
        # find the patch in the volume by matching the T1w LR patch against every aligned position
        hr = d["t1w"][0]
        found = False
        for x0 in range(0, hr_shape[0] - 7):
            for y0 in range(0, hr_shape[1] - 7, 4):
                for z0 in range(0, hr_shape[2] - 7, 2):
                    p = hr[x0 : x0 + 8, y0 : y0 + 8, z0 : z0 + 8]
                    if flip:
                        p = p.flip([0, 1, 2])
                    if torch.allclose(s["t1w_lr"][0], 0.5 * (p[..., 0::2] + p[..., 1::2]), atol=1e-5):
                        torch.testing.assert_close(s["target"][:, 0], p[ijk[:, 0], ijk[:, 1], ijk[:, 2]])
                        found = True
        assert found


def test_missing_labels_with_segmentation_on_is_an_input_error(dataset):
    items = json.loads(Path(dataset).read_text(encoding="utf-8"))["training"]
    assert check_nexus_datalist(items, segmentation=True) == items
    no_label = [{k: v for k, v in it.items() if k != "label"} for it in items]
    with pytest.raises(InputError, match="segmentation-enhanced learning is on"):
        check_nexus_datalist(no_label, segmentation=True)
    assert check_nexus_datalist(no_label, segmentation=False) == no_label


def test_realistic_dataset_is_the_nexus_layout_on_real_anatomy(tmp_path):
    """The realistic Nexus set: held-out real anatomy (training and test from different hemispheres), the same
    thick-slice scans, padding, field of view and labels as the synthetic set."""
    from monai_inr.data import anatomy as A
    from monai_inr.data.nexus import build_nexus_realistic_dataset

    if not A.colin27_available():
        pytest.skip("the Colin27 brain is not installed (Debian package mricron-data, or set MONAI_INR_COLIN27_DIR)")
    path = build_nexus_realistic_dataset(tmp_path / "nx", num_train=1, num_val=0, num_test=1, spacing=6.0)
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    assert [len(doc[s]) for s in ("training", "validation", "test")] == [1, 0, 1]
    hr_doc = json.loads((tmp_path / "nx" / "hr" / "datalist.json").read_text(encoding="utf-8"))
    assert hr_doc["metadata"]["parameters"]["holdout"] == "hemisphere"
    assert doc["metadata"]["parameters"]["hr"] == hr_doc["metadata"]["parameters"]
    for item in (doc["training"][0], doc["test"][0]):
        _check_item_layout(item)
        lab = np.asarray(nib.load(item["label"]).dataobj)
        assert set(np.unique(lab).tolist()) <= {0, 1, 2} and (lab == 1).any()
    src = nib.load(hr_doc["test"][0]["t2w"]).get_fdata()
    assert np.allclose(nib.load(doc["test"][0]["t2w"]).get_fdata()[tuple(slice(0, n) for n in src.shape)], src)
    assert build_nexus_realistic_dataset(tmp_path / "nx", num_train=1, num_val=0, num_test=1, spacing=6.0) == path
