"""Scale-pair patch sampling and coordinate sampling: contracts, physical consistency, determinism, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose
from monai.utils import set_determinism

from monai_inr.errors import InputError
from monai_inr import coords
from monai_inr.transforms import (
    DEGRADATION_KEY,
    DEGRADATION_SCALE_KEY,
    FullGridCoordinatesd,
    RandCoordinateSampled,
    RandScalePatchPairSampled,
    ThickSliceAcquisition,
    resize_cell_centred,
    sample_coordinates,
    scale_grid,
)


def oblique_affine(spacing=(0.8, 1.0, 1.2), origin=(-20.0, 5.0, 3.0), angle=0.25) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    a = np.eye(4)
    a[:3, :3] = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]]) @ np.diag(spacing)
    a[:3, 3] = origin
    return a


def index_volume(shape, channels=1) -> np.ndarray:
    """Voxel values that encode their own flat index (channel c adds 0.5 c), so a value identifies its voxel."""
    flat = np.arange(int(np.prod(shape)), dtype=np.float32).reshape(shape)
    return np.stack([flat + 0.5 * c for c in range(channels)])


def hr_image(shape=(30, 28, 26), channels=1) -> MetaTensor:
    return MetaTensor(torch.as_tensor(index_volume(shape, channels)), affine=oblique_affine())


def unflatten(values: torch.Tensor, shape) -> np.ndarray:
    return np.stack(np.unravel_index(values.numpy().round().astype(np.int64), shape), -1).astype(np.float64)


# --------------------------------------------------------------------------------------------- sample_coordinates


def test_sample_coordinates_values_match_nearest_lookup_and_errors():
    hr = torch.rand(2, 6, 5, 4, generator=torch.Generator().manual_seed(0))
    coord, cell, values, idx = sample_coordinates(hr, 50, np.random.RandomState(0), return_indices=True)
    assert coord.shape == cell.shape == (50, 3) and values.shape == (50, 2) and coord.dtype == torch.float32
    assert len(np.unique(idx.numpy(), axis=0)) == 50  # without replacement
    torch.testing.assert_close(values, coords.sample_features(hr[None], coord[None], mode="nearest")[0])
    torch.testing.assert_close(cell, torch.tensor([[2 / 6, 2 / 5, 2 / 4]]).expand(50, 3))
    with pytest.raises(ValueError, match="exceeds the 120 voxels"):
        sample_coordinates(hr, 121, np.random.RandomState(0))
    assert sample_coordinates(hr, 500, np.random.RandomState(0), replace=True)[0].shape == (500, 3)


# --------------------------------------------------------------------------------------- RandScalePatchPairSampled


def test_patch_pair_shapes_coordinates_values_and_physical_positions():
    """LR patch, coordinates and labels describe the same physical points (checked through world coordinates)."""
    shape = (30, 28, 26)
    img = hr_image(shape)
    t = RandScalePatchPairSampled(lr_patch_size=(4, 5, 3), scale_range=(2.0, 4.0), num_coords=60, hr_keys="hr")
    t.set_random_state(1)
    for _ in range(3):
        out = t({"image": img, "name": "s0"})
        lr, hr = out["image"], out["hr"]
        s = out["scale"].numpy()
        assert lr.shape == (1, 4, 5, 3) and out["label"].shape == (60, 1) and out["coord"].shape == (60, 3)
        assert out["name"] == "s0" and lr.dtype == torch.float32
        np.testing.assert_allclose(np.asarray(hr.shape[1:]) / [4, 5, 3], s, rtol=1e-6)
        np.testing.assert_allclose(lr.meta[DEGRADATION_SCALE_KEY], s, rtol=1e-6)
        # cell = HR voxel in the LR patch frame; value at coord == nearest lookup in the HR crop
        torch.testing.assert_close(out["cell"], (2.0 / torch.tensor(hr.shape[1:], dtype=torch.float32)).expand(60, 3))
        nearest = coords.sample_features(hr[None].as_tensor(), out["coord"][None], mode="nearest")[0]
        torch.testing.assert_close(out["label"], nearest)
        # LR patch is the cell-centred cubic downsampling of the HR crop
        np.testing.assert_array_equal(lr.numpy(), resize_cell_centred(hr.numpy(), (4, 5, 3), order=3))
        # physics: coord in the LR patch frame -> world == world of the HR voxel whose value was returned
        world_from_lr = coords.normalized_to_world(out["coord"].double().numpy(), (4, 5, 3), lr.affine.numpy())
        world_true = coords.voxel_to_world(unflatten(out["label"][:, 0], shape), oblique_affine())
        np.testing.assert_allclose(world_from_lr, world_true, atol=1e-4)
        # the LR patch covers the HR crop's FOV: same FOV centre
        centre = lambda sh, a: coords.voxel_to_world((np.asarray(sh, float) - 1) / 2, a)  # noqa: E731
        lr_centre, hr_centre = centre((4, 5, 3), lr.affine.numpy()), centre(hr.shape[1:], hr.affine.numpy())
        np.testing.assert_allclose(lr_centre, hr_centre, atol=1e-9)


def test_patch_pair_scales_on_the_grid_and_anisotropic_option():
    np.testing.assert_allclose(scale_grid((2.0, 4.0), 0.1), np.round(np.arange(20, 41) / 10, 10))
    img = hr_image((44, 44, 44))
    t = RandScalePatchPairSampled(lr_patch_size=(10, 10, 10), scale_range=(2.0, 4.0), num_coords=8)
    t.set_random_state(0)
    seen = set()
    for _ in range(25):
        s = t({"image": img})["scale"].numpy()
        assert s[0] == s[1] == s[2] and 2.0 <= s[0] <= 4.0
        assert abs(s[0] * 10 - round(s[0] * 10)) < 1e-5  # on the 0.1 grid (round(10 s) / 10 exactly)
        seen.add(round(float(s[0]), 1))
    assert len(seen) > 8
    aniso = RandScalePatchPairSampled(lr_patch_size=(4, 4, 4), scale_range=(1.0, 3.0), isotropic=False, num_coords=8)
    aniso.set_random_state(0)
    assert any(len(set(aniso({"image": img})["scale"].tolist())) > 1 for _ in range(5))


def test_patch_pair_collates_with_monai_dataloader_and_is_2d_capable():
    data = [{"image": hr_image((24, 24, 24), channels=2)} for _ in range(3)]
    t = RandScalePatchPairSampled(lr_patch_size=(5, 5, 5), scale_range=(1.5, 4.0), num_coords=100, num_samples=2)
    loader = DataLoader(Dataset(data, Compose([t])), batch_size=3, num_workers=0)
    batch = next(iter(loader))
    assert batch["image"].shape == (6, 2, 5, 5, 5) and isinstance(batch["image"], MetaTensor)
    assert batch["coord"].shape == (6, 100, 3) and batch["cell"].shape == (6, 100, 3)
    assert batch["label"].shape == (6, 100, 2) and batch["scale"].shape == (6, 3)
    t2d = RandScalePatchPairSampled(lr_patch_size=(6, 8), scale_range=(1.0, 2.0), num_coords=40)
    out = t2d({"image": MetaTensor(torch.rand(1, 20, 20))})
    assert out["image"].shape == (1, 6, 8) and out["coord"].shape == (40, 2) and out["scale"].shape == (2,)


def _run(seed: int):
    set_determinism(seed=seed)
    pipeline = Compose([RandScalePatchPairSampled(lr_patch_size=(4, 4, 4), num_coords=20)])
    out = pipeline({"image": hr_image((20, 20, 20))})
    set_determinism(seed=None)
    return out


def test_patch_pair_determinism():
    a, b, c = _run(7), _run(7), _run(8)
    for k in ("image", "coord", "label", "scale"):
        torch.testing.assert_close(a[k], b[k])
    assert not torch.equal(a["label"], c["label"])


def test_patch_pair_multiple_keys_share_crop_and_foreground_option():
    img = np.zeros((1, 24, 24, 24), np.float32)
    img[:, 10:, 10:, 10:] = 1.0  # foreground in one corner only
    aff = oblique_affine()
    d = {"image": MetaTensor(torch.as_tensor(img), affine=aff), "t2": MetaTensor(torch.as_tensor(2 * img), affine=aff)}
    t = RandScalePatchPairSampled(
        keys=("image", "t2"), label_keys=("label", "label_t2"), lr_patch_size=(4, 4, 4), scale_range=(2.0, 2.0),
        num_coords=64, foreground_threshold=0.5, min_foreground=0.9, max_tries=200,
    )  # fmt: skip
    t.set_random_state(3)
    out = t(d)
    torch.testing.assert_close(out["label_t2"], 2 * out["label"])
    torch.testing.assert_close(out["t2"].affine, out["image"].affine)
    assert out["label"].mean() > 0.85 and out["image"].mean() > 0.85


def test_patch_pair_errors():
    with pytest.raises(ValueError, match=">= 1"):
        RandScalePatchPairSampled(scale_range=(0.5, 2.0))
    with pytest.raises(ValueError, match="positive"):
        RandScalePatchPairSampled(scale_range=(0.0, 2.0))
    with pytest.raises(ValueError, match="low <= high"):
        RandScalePatchPairSampled(scale_range=(3.0, 2.0))
    with pytest.raises(ValueError, match="num_coords=8001 must be between 1 and the 8000 voxels"):
        RandScalePatchPairSampled(num_coords=8001)
    RandScalePatchPairSampled(num_coords=8001, replace=True)
    with pytest.raises(InputError, match="is smaller than the 40x40x40 voxels an LR patch of 10x10x10 needs"):
        RandScalePatchPairSampled(lr_patch_size=(10, 10, 10), num_coords=10)({"image": torch.rand(1, 30, 30, 19)})
    with pytest.raises(ValueError, match="spatial dims"):
        RandScalePatchPairSampled(lr_patch_size=(4, 4), num_coords=10)({"image": torch.rand(1, 30, 30, 30)})


# ------------------------------------------------------------------------------------------ RandCoordinateSampled


def test_coordinate_sampler_own_frame_and_determinism():
    img = hr_image((8, 7, 6), channels=2)
    t = RandCoordinateSampled("image", num_coords=30)
    out1 = t.set_random_state(5)({"image": img})
    out2 = RandCoordinateSampled("image", num_coords=30).set_random_state(5)({"image": img})
    torch.testing.assert_close(out1["coord"], out2["coord"])
    assert out1["image"] is img and out1["label"].shape == (30, 2)
    nearest = coords.sample_features(img[None].as_tensor(), out1["coord"][None], mode="nearest")[0]
    torch.testing.assert_close(out1["label"], nearest)
    with pytest.raises(ValueError, match="exceeds the 336 voxels"):
        RandCoordinateSampled("image", num_coords=337)({"image": img})
    with pytest.raises(ValueError, match="distinct"):
        RandCoordinateSampled(("a", "b"), num_coords=3)


def test_coordinate_sampler_reference_frame_through_world_coordinates():
    """Thick-slice LR voxels expressed in the HR grid's frame land on their physical positions."""
    hr_shape = (12, 10, 16)
    hr = MetaTensor(torch.rand(1, *hr_shape), affine=oblique_affine())
    lr = ThickSliceAcquisition(axis=2, factor=4)(hr)
    lr = MetaTensor(torch.as_tensor(index_volume(lr.shape[1:])), meta=lr.meta)  # encode voxel identity
    t = RandCoordinateSampled("lr", num_coords=40, reference_key="hr")
    out = t.set_random_state(0)({"lr": lr, "hr": hr})
    world_true = coords.voxel_to_world(unflatten(out["label"][:, 0], lr.shape[1:]), lr.affine.numpy())
    world_ref = coords.normalized_to_world(out["coord"].double().numpy(), hr_shape, hr.affine.numpy())
    np.testing.assert_allclose(world_ref, world_true, atol=1e-4)
    # LR cell is 4 HR voxels thick along axis 2 in the HR frame
    torch.testing.assert_close(out["cell"][0], torch.tensor([2 / 12, 2 / 10, 4 * 2 / 16]))
    explicit = RandCoordinateSampled("lr", num_coords=40, reference_affine=hr.affine, reference_shape=hr_shape)
    torch.testing.assert_close(explicit.set_random_state(0)({"lr": lr})["coord"], out["coord"])


def test_full_grid_coordinates():
    img = MetaTensor(torch.rand(2, 4, 3, 5), affine=oblique_affine())
    t = FullGridCoordinatesd("image", coord_keys="hr_coord", cell_keys="hr_cell", value_keys="hr_values")
    out = t({"image": img})
    torch.testing.assert_close(out["hr_coord"], coords.normalized_grid((4, 3, 5)))
    torch.testing.assert_close(out["hr_values"].reshape(4, 3, 5, 2), img.as_tensor().permute(1, 2, 3, 0))
    assert out["hr_cell"].shape == (60, 3)


class _AreaDegradation:
    """Stand-in physical acquisition: block mean to the exact LR size (records what it was called with)."""

    def __init__(self):
        self.calls = []

    def __call__(self, hr, scale, reference=None):
        self.calls.append((tuple(hr.shape), scale, reference))
        lr_size = tuple(round(n / s) for n, s in zip(hr.shape[1:], scale))
        return torch.nn.functional.adaptive_avg_pool3d(hr[None], lr_size)[0] + (reference or 0.0)


def test_patch_pair_physical_degradation_and_supervise_margin():
    shape = (40, 36, 44)
    data = {"image": MetaTensor(torch.from_numpy(index_volume(shape)), affine=torch.from_numpy(oblique_affine())),
            "wm": 7.0}
    deg = _AreaDegradation()
    t = RandScalePatchPairSampled(
        "image", lr_patch_size=(8, 8, 8), scale_range=(2.0, 3.0), scale_step=0.5, isotropic=False, num_coords=50,
        degradation=deg, degradation_prob=1.0, reference_key="wm", supervise_margin=2,
    ).set_random_state(3)
    for _ in range(4):
        out = t(data)
        hr_shape, scale, ref = deg.calls[-1]
        hr_size = hr_shape[1:]
        assert ref == 7.0 and scale == tuple(float(n) / 8 for n in hr_size)
        assert out["image"].shape == (1, 8, 8, 8) and "physical(" in str(out["image"].meta[DEGRADATION_KEY])
        assert torch.equal(out["scale"], torch.tensor(scale, dtype=torch.float32))
        # supervised voxels lie inside the LR patch less 2 LR voxels per face, and carry their exact HR values
        c = out["coord"].double()
        assert bool((c.abs() <= 1 - 2 * 2 / 8 + 1e-6).all())
        idx = torch.round((c + 1) / 2 * torch.tensor(hr_size, dtype=torch.float64) - 0.5).long()
        start = np.unravel_index(int(out["label"][0, 0]), shape)  # recover the crop from one voxel's index value
        first = np.array(start) - idx[0].numpy()
        expected = index_volume(shape)[0][tuple((idx.numpy() + first).T)]
        np.testing.assert_array_equal(out["label"][:, 0].numpy(), expected)
        torch.testing.assert_close(out["cell"][0], 2.0 / torch.tensor(hr_size, dtype=torch.float32))
    # probability 0 keeps the spline path; bad arguments fail at construction
    deg.calls.clear()
    RandScalePatchPairSampled("image", lr_patch_size=(8, 8, 8), num_coords=50, degradation=deg, degradation_prob=0.0)(data)
    assert deg.calls == []
    with pytest.raises(ValueError, match="supervise_margin"):
        RandScalePatchPairSampled("image", lr_patch_size=(8, 8, 8), supervise_margin=4)
    with pytest.raises(ValueError, match="degradation_prob"):
        RandScalePatchPairSampled("image", lr_patch_size=(8, 8, 8), degradation=deg, degradation_prob=1.5)


def test_patch_pair_isotropic_probability_mixes_isotropic_and_anisotropic_scales():
    data = {"image": MetaTensor(torch.rand(1, 50, 50, 50), affine=torch.eye(4))}
    t = RandScalePatchPairSampled("image", lr_patch_size=(6, 6, 6), scale_range=(1.5, 4.0), scale_step=0.1,
                                  isotropic=0.5, num_coords=20).set_random_state(0)
    iso = [len(set(t(data)["scale"].tolist())) == 1 for _ in range(60)]
    assert 15 < sum(iso) < 45  # about half isotropic; per-axis draws are rarely all equal
    with pytest.raises(ValueError, match="isotropic"):
        RandScalePatchPairSampled("image", lr_patch_size=(6, 6, 6), isotropic=1.5)
