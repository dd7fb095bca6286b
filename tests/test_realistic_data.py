"""Realistic subjects from the Colin27 brain: segmentation cache, anatomy, hemisphere hold-out, dataset, real scan."""

from __future__ import annotations

import json
import os

import nibabel as nib
import numpy as np
import pytest

from monai_inr.coords import fov_affine, spacing_from_affine
from monai_inr.data import anatomy as A
from monai_inr.data import phantom as P
from monai_inr.data import realistic as R
from monai_inr.errors import InputError

needs_colin27 = pytest.mark.skipif(
    not A.colin27_available(),
    reason="the Colin27 brain is not installed (Debian package mricron-data, or set MONAI_INR_COLIN27_DIR)",
)


def _resolution() -> float:
    """1 mm when that segmentation is cached (instant), else 2 mm (segmented once, about half a minute)."""
    cached = A.colin27_cached_resolutions()
    return 1.0 if 1.0 in cached else 2.0


@pytest.fixture(scope="module")
def colin():
    return A.colin27_anatomy(_resolution())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, colin):
    out = tmp_path_factory.mktemp("realistic")
    path = R.build_realistic_dataset(out, num_train=2, num_val=1, num_test=2, spacing=2.0, seed=0,
                                     contrasts=("t1w", "t2w", "flair"), lesion=0.5,
                                     anatomy_resolution_mm=_resolution())
    return path, json.loads(path.read_text(encoding="utf-8"))


def test_colin27_dir_missing_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("MONAI_INR_COLIN27_DIR", str(tmp_path))
    with pytest.raises(InputError, match="mricron-data"):
        A.colin27_dir()
    assert not A.colin27_available()


@needs_colin27
def test_segmentation_cached_and_plausible():
    res = _resolution()
    seg = A.colin27_segmentation(res)
    assert seg.meta["from_cache"] and seg.meta["options"]["resolution_mm"] == res
    assert seg.fractions.shape[0] == 3 and seg.fractions.dtype == np.float32
    total = seg.fractions.sum(axis=0)
    assert total.max() <= 1.0 + 1e-4 and seg.fractions.min() >= 0.0
    vol = seg.volumes_ml  # CSF includes the extra-cerebral shell
    assert 150 < vol["csf"] < 650 and 600 < vol["gm"] < 1000 and 500 < vol["wm"] < 850, vol
    # T1w: WM brighter than GM brighter than CSF in the source image
    t1 = A.colin27_files()["t1w"]
    img = nib.load(str(t1))
    data = A._area_resample(np.asarray(img.dataobj, np.float32), img.affine, seg.fractions.shape[1:], seg.affine)
    means = [float(data[seg.fractions[i] > 0.9].mean()) for i in range(3)]
    assert means[0] < means[1] < means[2], means


@needs_colin27
def test_hemisphere_holdout_uses_disjoint_anatomy(colin):
    m = A.midline_plane(colin)
    x = colin.fractions_affine[0, 0] * (m - 0.5) + colin.fractions_affine[0, 3]
    assert abs(x) < 5.0  # Colin27 is in MNI-like space: the mid-sagittal plane is near x = 0
    left = A.hemisphere_anatomy(colin, "left", plane=m)
    right = A.hemisphere_anatomy(colin, "right", plane=m)
    for h in (left, right):
        assert h.meta["mirror_plane_x_mm"] == pytest.approx(x)
        assert h.shape == colin.shape and np.allclose(h.affine, colin.affine)
    # the left version is symmetric about the plane and equals the source on the left (x < plane) side
    def world_x(anat):
        i = np.arange(anat.fractions.shape[1])
        return anat.fractions_affine[0, 0] * i + anat.fractions_affine[0, 3]

    for h, side in ((left, "left"), (right, "right")):
        xs = world_x(h)
        keep = xs < x if side == "left" else xs > x
        src_i = np.round((xs[keep] - colin.fractions_affine[0, 3]) / colin.fractions_affine[0, 0]).astype(int)
        ok = (src_i >= 0) & (src_i < colin.fractions.shape[1])
        np.testing.assert_allclose(h.fractions[:, np.flatnonzero(keep)[ok]], _crop_like(colin, h)[:, src_i[ok]])
        mirror_i = np.round((2 * x - xs - h.fractions_affine[0, 3]) / h.fractions_affine[0, 0]).astype(int)
        valid = (mirror_i >= 0) & (mirror_i < len(xs))
        np.testing.assert_allclose(h.fractions[:, valid], h.fractions[:, mirror_i[valid]])
    # different anatomy on the two sides (not a mirror image of each other)
    assert not np.allclose(left.fractions.sum(), right.fractions.sum(), rtol=1e-4)


def _crop_like(colin, h):
    """``colin.fractions`` re-indexed on ``h``'s (y, z) box (the x axis left untouched)."""
    off = np.round((h.fractions_affine[:3, 3] - colin.fractions_affine[:3, 3]) / np.diag(colin.fractions_affine)[:3])
    oy, oz = int(off[1]), int(off[2])
    ny, nz = h.fractions.shape[2:]
    out = np.zeros((3, colin.fractions.shape[1], ny, nz), np.float32)
    ys, zs = np.arange(ny) + oy, np.arange(nz) + oz
    vy = (ys >= 0) & (ys < colin.fractions.shape[2])
    vz = (zs >= 0) & (zs < colin.fractions.shape[3])
    out[:, :, np.flatnonzero(vy)[:, None], np.flatnonzero(vz)[None, :]] = \
        colin.fractions[:, :, ys[vy][:, None], zs[vz][None, :]]
    return out


def test_hemisphere_sources_are_disjoint_on_a_coded_volume():
    """Every voxel value of a coded volume appears only in the hemisphere version it belongs to."""
    shape = (20, 12, 10)
    code = np.arange(1, np.prod(shape) + 1, dtype=np.float32).reshape(shape) / np.prod(shape)
    fr = np.stack([np.zeros(shape), code * 0.5, np.full(shape, 0.5)]).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-19.0, -11.0, -9.0]  # x = -19 ... 19: midline between index 9 and 10
    anat = P.anatomy_from_fractions(fr, affine, margin_mm=0.0)
    left = A.hemisphere_anatomy(anat, "left", plane=10)
    right = A.hemisphere_anatomy(anat, "right", plane=10)
    lv, rv = set(np.unique(left.fractions[1])) - {0.0}, set(np.unique(right.fractions[1])) - {0.0}
    assert lv and rv and not (lv & rv)
    assert lv == set(np.unique(fr[1][:10])) and rv == set(np.unique(fr[1][10:]))


@needs_colin27
def test_subjects_deterministic_and_on_the_colin27_fov(colin):
    a = P.make_subject(11, spacing=3.0, contrasts=("t1w",), anatomy=colin)
    b = P.make_subject(11, spacing=3.0, contrasts=("t1w",), anatomy=colin)
    c = P.make_subject(12, spacing=3.0, contrasts=("t1w",), anatomy=colin)
    np.testing.assert_array_equal(a.images["t1w"], b.images["t1w"])
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.images["t1w"], c.images["t1w"])
    src = nib.load(str(A.colin27_files()["t1w"]))
    assert a.shape == tuple(int(np.floor(n * 0.5 / 3.0 + 0.5)) for n in src.shape)
    np.testing.assert_allclose(a.affine, fov_affine(src.affine, src.shape, a.shape))
    assert a.meta["anatomy"]["name"] == "colin27"


@needs_colin27
def test_dataset_layout_geometry_and_labels(dataset):
    path, doc = dataset
    assert set(doc) == {"training", "validation", "test", "real", "real_training", "metadata"}
    assert [len(doc[s]) for s in ("training", "validation", "test", "real", "real_training")] == [2, 1, 2, 1, 1]
    meta = doc["metadata"]
    # the real scan's training hemisphere is cropped to the left of the mirror plane; its evaluation mask lies right
    plane = meta["mirror_plane_x_mm"]
    left = nib.load(doc["real_training"][0]["image"])
    x_left = left.affine[0, 0] * np.arange(left.shape[0]) + left.affine[0, 3]
    assert left.affine[0, 0] > 0 and x_left.max() < plane and left.shape[1:] == nib.load(doc["real"][0]["image"]).shape[1:]
    real_mask = nib.load(doc["real"][0]["mask"])
    xs = np.nonzero(np.asarray(real_mask.dataobj).any(axis=(1, 2)))[0]
    assert real_mask.affine[0, 0] * xs.min() + real_mask.affine[0, 3] > plane
    assert meta["hemispheres"] == {"training": "left", "validation": "right", "test": "right"}
    src = nib.load(str(A.colin27_files()["t1w"]))
    fov_centre = src.affine[:3, :3] @ ((np.asarray(src.shape) - 1) / 2) + src.affine[:3, 3]
    lesions = 0
    for split in ("training", "validation", "test"):
        for item in doc[split]:
            assert {"image", "mask", "label", "t1w", "t2w", "flair", "subject"} <= set(item)
            assert item["image"] == item["t1w"]
            imgs = {k: nib.load(item[k]) for k in ("t1w", "t2w", "flair", "label", "mask")}
            aff = imgs["t1w"].affine
            for im in imgs.values():
                np.testing.assert_allclose(im.affine, aff, atol=1e-5)
                assert im.shape == imgs["t1w"].shape
            # physical position: same field of view (centre) as ch2better, 2 mm voxels (FOV / round(FOV / 2))
            shape = np.asarray(imgs["t1w"].shape)
            centre = aff[:3, :3] @ ((shape - 1) / 2) + aff[:3, 3]
            np.testing.assert_allclose(centre, fov_centre, atol=1e-4)
            np.testing.assert_allclose(spacing_from_affine(aff) * shape, np.asarray(src.shape) * 0.5, atol=1e-4)
            lab = np.asarray(imgs["label"].dataobj)
            mask = np.asarray(imgs["mask"].dataobj)
            assert set(np.unique(lab)) <= {0, 1, 2, 3, 4, 5}
            np.testing.assert_array_equal(mask > 0, lab > 0)
            lesions += int((lab >= 4).any())
            vox_ml = float(np.prod(spacing_from_affine(aff))) / 1000.0
            vol = {c: float((lab == v).sum() * vox_ml) for c, v in (("csf", 1), ("gm", 2), ("wm", 3))}
            assert 150 < vol["csf"] < 700 and 500 < vol["gm"] < 1100 and 400 < vol["wm"] < 950, vol
            t1 = np.asarray(imgs["t1w"].dataobj)
            t2 = np.asarray(imgs["t2w"].dataobj)
            fl = np.asarray(imgs["flair"].dataobj)
            m = {c: (t1[lab == v].mean(), t2[lab == v].mean(), fl[lab == v].mean()) for c, v in
                 (("csf", 1), ("gm", 2), ("wm", 3))}
            assert m["csf"][0] < m["gm"][0] < m["wm"][0]  # T1w
            assert m["csf"][1] > m["gm"][1] > m["wm"][1]  # T2w
            assert m["csf"][2] < m["wm"][2] < m["gm"][2]  # FLAIR: CSF nulled
    assert lesions >= 2  # lesion=0.5: one per split with >= 2 subjects, rounding half up
    subjects = meta["subjects"]
    assert [subjects[i["subject"]]["hemisphere"] for i in doc["training"]] == ["left", "left"]
    assert {subjects[i["subject"]]["hemisphere"] for i in doc["test"] + doc["validation"]} == {"right"}
    seeds = {s: {subjects[i["subject"]]["seed"] for i in doc[s]} for s in ("training", "validation", "test")}
    assert not (seeds["training"] & seeds["test"]) and not (seeds["training"] & seeds["validation"])


@needs_colin27
def test_real_scan_item(dataset):
    _, doc = dataset
    item = doc["real"][0]
    assert {"image", "t1w", "mask", "label", "subject"} <= set(item)
    src = nib.load(str(A.colin27_files()["head"]))
    img = nib.load(item["image"])
    np.testing.assert_allclose(img.affine, src.affine)
    np.testing.assert_array_equal(np.asarray(img.dataobj), np.asarray(src.dataobj, np.float32))
    mask = np.asarray(nib.load(item["mask"]).dataobj) > 0
    lab = np.asarray(nib.load(item["label"]).dataobj)
    assert set(np.unique(lab)) == {0, 1, 2, 3}
    # held-out hemisphere only: every mask voxel lies right of the mirror plane, and it holds about half the brain
    x = src.affine[0, 0] * np.nonzero(mask)[0] + src.affine[0, 3]
    assert x.min() > doc["metadata"]["mirror_plane_x_mm"]
    assert 0.4 < mask.sum() / (lab > 0).sum() < 0.6
    # labels agree with the real contrast: WM brighter than GM in the real T1w
    data = np.asarray(src.dataobj, np.float32)
    assert data[lab == 3].mean() > data[lab == 2].mean() > data[lab == 1].mean()
    # the real scan's training hemisphere: cropped to the left of the plane, world positions kept
    train = doc["real_training"][0]
    timg = nib.load(train["image"])
    ta = timg.affine
    assert np.allclose(ta[:3, :3], src.affine[:3, :3])
    x_max = ta[0, 0] * (timg.shape[0] - 1) + ta[0, 3]
    assert x_max < doc["metadata"]["mirror_plane_x_mm"]
    off = np.round(np.linalg.solve(src.affine[:3, :3], ta[:3, 3] - src.affine[:3, 3])).astype(int)
    box = tuple(slice(o, o + n) for o, n in zip(off, timg.shape))
    np.testing.assert_array_equal(np.asarray(timg.dataobj), np.asarray(src.dataobj, np.float32)[box])


@needs_colin27
def test_rebuild_is_skipped_when_current(dataset):
    path, doc = dataset
    p = doc["metadata"]["parameters"]
    before = os.stat(path).st_mtime_ns
    again = R.build_realistic_dataset(path.parent, num_train=2, num_val=1, num_test=2, spacing=2.0, seed=0,
                                      contrasts=("t1w", "t2w", "flair"), lesion=0.5,
                                      anatomy_resolution_mm=p["anatomy_resolution_mm"])
    assert again == path and os.stat(path).st_mtime_ns == before
    # the command line with the same parameters is a no-op too
    argv = ["--output_dir", str(path.parent), "--num_train", "2", "--num_val", "1", "--num_test", "2", "--spacing",
            "2", "--contrasts", "t1w", "t2w", "flair", "--lesion", "0.5", "--anatomy_resolution_mm",
            str(p["anatomy_resolution_mm"])]
    assert R.main(argv) == path and os.stat(path).st_mtime_ns == before


def test_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="holdout"):
        R.build_realistic_dataset(tmp_path, 1, 0, 0, holdout="quadrant")
    with pytest.raises(InputError, match="does not exist"):
        R.build_realistic_dataset(tmp_path, 1, 0, 0, t1w=tmp_path / "missing.nii.gz")
    with pytest.raises(InputError, match="at least one training"):
        R.build_realistic_dataset(tmp_path, 0, 0, 0)


@needs_colin27
@pytest.mark.slow
def test_segment_user_t1w_with_mask(tmp_path, monkeypatch):
    """A user T1w (here Colin27's 1 mm head with its brain mask) segmented at 3 mm into an empty cache, then reused."""
    monkeypatch.setenv("MONAI_INR_CACHE", str(tmp_path))
    files = A.colin27_files()
    seg = A.segment_t1w(files["head"], masks=[files["bet"]], resolution_mm=3.0)
    assert not seg.meta["from_cache"] and (seg.path / "fractions.nii.gz").is_file()
    vol = seg.volumes_ml
    assert 600 < vol["gm"] + vol["wm"] < 1900 and vol["wm"] > 300, vol
    again = A.segment_t1w(files["head"], masks=[files["bet"]], resolution_mm=3.0)
    assert again.meta["from_cache"]
    np.testing.assert_allclose(again.fractions, seg.fractions, atol=1e-6)


@needs_colin27
@pytest.mark.slow
def test_segment_user_t1w_head_without_mask(tmp_path, monkeypatch):
    """A T1w head without a mask: morphological brain estimate refined by the registered template brain."""
    monkeypatch.setenv("MONAI_INR_CACHE", str(tmp_path))
    seg = A.segment_t1w(A.colin27_files()["head"], resolution_mm=3.0)
    vol = seg.volumes_ml
    assert 100 < vol["csf"] < 700 and 500 < vol["gm"] < 1100 and 400 < vol["wm"] < 900, vol
    # the affine registration to the MNI template is close to the identity (Colin27 lies in MNI-like space)
    np.testing.assert_allclose(np.asarray(seg.meta["to_template"])[:3, :3], np.eye(3), atol=0.08)
