import json

import numpy as np
import pytest

from monai_inr.coords import voxel_to_world
from monai_inr.errors import InputError
from preprocessing.grid import paper_grid, upsampled_affine
from preprocessing.prepare import (
    PrepareConfig,
    build_datalist,
    minmax_normalise,
    pad_or_crop,
    plane_axes,
    slice_volumes,
)

pytestmark = pytest.mark.xdist_group("preprocessing")  # shares the phantom/ANTs caches


def test_paper_geometry_pads_76_to_112_keeping_positions():
    g = paper_grid()
    up_aff = upsampled_affine(g.affine, g.shape)
    vol = np.random.default_rng(0).uniform(1, 2, (112, 112, 76)).astype(np.float32)
    out, aff, info = pad_or_crop(vol, up_aff, 112)
    assert out.shape == (112, 112, 112)
    assert info["pad_before"] == [0, 0, 18] and info["pad_after"] == [0, 0, 18]
    assert np.array_equal(out[:, :, 18:94], vol) and out[:, :, :18].max() == 0
    # voxel (i, j, k) of the input sits where voxel (i, j, k + 18) of the output sits
    before = voxel_to_world(np.array([5.0, 7.0, 3.0]), up_aff)
    assert np.allclose(before, voxel_to_world(np.array([5.0, 7.0, 21.0]), aff))


def test_crop_when_larger_and_odd_differences():
    aff = np.eye(4)
    vol = np.arange(5 * 8 * 3, dtype=np.float32).reshape(5, 8, 3)
    out, aff2, info = pad_or_crop(vol, aff, (4, 4, 6))
    assert out.shape == (4, 4, 6)
    assert info["crop_before"] == [0, 2, 0] and info["crop_after"] == [1, 2, 0]
    assert info["pad_before"] == [0, 0, 1] and info["pad_after"] == [0, 0, 2]
    assert out[0, 0, 1] == vol[0, 2, 0]
    assert np.allclose(voxel_to_world(np.array([0.0, 2.0, 0.0]), aff), voxel_to_world(np.array([0.0, 0.0, 1.0]), aff2))


def test_plane_axes_follow_the_affine():
    assert plane_axes(np.eye(4)) == {"sagittal": 0, "coronal": 1, "axial": 2}
    # array axes (S, R, P): slicing along axis 0 gives axial images
    perm = np.array([[0, 1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])
    assert plane_axes(perm) == {"axial": 0, "sagittal": 1, "coronal": 2}


def test_slices_three_planes_normalised_and_recorded():
    rng = np.random.default_rng(0)
    na = np.zeros((16, 16, 16), np.float32)
    na[4:12, 3:13, 5:11] = rng.uniform(10, 140, (8, 10, 6))
    t2 = np.zeros_like(na)
    t2[4:12, 3:13, 5:11] = rng.uniform(0.1, 0.9, (8, 10, 6))
    slices, stats = slice_volumes({"sodium": na, "t2w": t2}, np.eye(4), PrepareConfig(cube=16))
    assert len(slices) == 3 * 16
    assert {s["plane"] for s in slices} == {"sagittal", "coronal", "axial"}
    allv = np.concatenate([s["arrays"]["sodium"].ravel() for s in slices])
    assert allv.min() == 0 and allv.max() == pytest.approx(1)
    assert stats["sodium"]["max"] == pytest.approx(na.max()) and stats["sodium"]["min"] == 0
    assert sum(s["empty"] for s in slices) == (16 - 8) + (16 - 10) + (16 - 6)
    dropped, _ = slice_volumes({"sodium": na, "t2w": t2}, np.eye(4), PrepareConfig(cube=16, drop_empty=True))
    assert len(dropped) == 8 + 10 + 6
    per_slice, _ = slice_volumes({"sodium": na, "t2w": t2}, np.eye(4), PrepareConfig(cube=16, norm="slice"))
    s = next(s for s in per_slice if not s["empty"])
    assert s["arrays"]["t2w"].max() == pytest.approx(1) and len(s["minmax"]["t2w"]) == 2
    with pytest.raises(InputError):
        slice_volumes({"sodium": na, "t2w": t2[:-1]}, np.eye(4), PrepareConfig())
    assert minmax_normalise(np.ones(3))[0].max() == 0


def test_datalist_splits_subjects(tmp_path):
    for i in range(9):
        sub = tmp_path / f"sub-{i:02d}"
        (sub / "slices").mkdir(parents=True)
        entries = [{"sodium": f"slices/na_{p}.npy", "t2w": f"slices/t2_{p}.npy", "plane": "axial", "index": p,
                    "empty": p == 0} for p in range(3)]
        (sub / f"sub-{i:02d}_desc-slices_index.json").write_text(json.dumps({"lesion": i >= 7, "slices": entries}))
    d = build_datalist(tmp_path, seed=3)
    subs = d["subjects"]
    assert set(subs["test"]) >= {"sub-07", "sub-08"}  # lesion cases are test cases
    assert len(subs["training"]) == 5 and len(subs["test"]) == 4  # 7 healthy split 3:1 -> 5 + 2
    assert len(d["training"]) == 15 and all(not e["lesion"] for e in d["training"])
    e = d["training"][0]
    assert set(e) >= {"sodium", "t2w", "subject", "plane", "slice"} and e["sodium"].startswith("sub-")
    assert (tmp_path / "datalist.json").exists()
    d2 = build_datalist(tmp_path, tmp_path / "dl" / "list.json", seed=3, val_fraction=0.4, include_empty=False)
    assert len(d2["subjects"]["validation"]) == 2 and d2["training"][0]["sodium"].startswith("../sub-")
    assert all(not e["empty"] for e in d2["training"])
    with pytest.raises(InputError, match="no prepared subjects"):
        build_datalist(tmp_path / "dl")
