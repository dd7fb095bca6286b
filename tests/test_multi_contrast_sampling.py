"""2D multi-contrast samples: slices with world geometry, the crop/pad rule, exact k-space LR, paired scale patches."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_inr import coords
from monai_inr.errors import InputError
from monai_inr.transforms import (
    CropToMultipled,
    ExactKSpaceCropd,
    KSpaceCrop,
    RandPairedScalePatchd,
    RandSliced,
    SelectSliced,
    crop_or_pad_to_multiple,
    exact_lr_size,
    select_slice,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _volume(shape=(10, 12, 14)):
    a = np.array([[0.0, 0.0, 2.0, -20.0], [0.0, 1.5, 0.0, 5.0], [-3.0, 0.0, 0.0, 30.0], [0, 0, 0, 1]])  # oblique axes
    return MetaTensor(torch.rand(1, *shape), affine=torch.as_tensor(a))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slices_keep_world_positions(axis):
    vol = _volume()
    k = 4
    sl = select_slice(vol, axis, k)
    plane = [d for d in range(3) if d != axis]
    assert sl.shape == (1, vol.shape[1 + plane[0]], vol.shape[1 + plane[1]])
    ij = np.array([[0, 0], [3, 5], [7, 2]])
    for i, j in ij:
        v = [0, 0, 0]
        v[axis], v[plane[0]], v[plane[1]] = k, i, j
        np.testing.assert_allclose(
            coords.voxel_to_world([i, j, 0], sl.affine.numpy()), coords.voxel_to_world(v, vol.affine.numpy())
        )
        assert sl[0, i, j] == vol[0, v[0], v[1], v[2]]
    with pytest.raises(InputError):
        select_slice(vol, axis, 99)
    assert select_slice(sl, axis, 0) is sl  # already 2D


def test_select_and_random_slices_are_shared_across_keys():
    vol = _volume()
    d = SelectSliced(["image", "reference"], axis=1)({"image": vol, "reference": vol + 1, "slice_index": 3})
    assert torch.equal(d["reference"], d["image"] + 1)
    data = torch.zeros(1, 6, 6, 8)
    data[:, :, :, 5] = 1.0  # only slice 5 has foreground
    r = RandSliced(["image", "reference"], axis=2, min_foreground=0.5)
    r.set_random_state(0)
    out = r({"image": data, "reference": data * 2})
    assert out["slice_index"] == 5 and torch.equal(out["reference"], out["image"] * 2)


def test_crop_and_pad_rule_and_affines():
    img = MetaTensor(torch.arange(50 * 31, dtype=torch.float32).reshape(1, 50, 31), affine=torch.eye(4))
    c = crop_or_pad_to_multiple(img, 24)
    assert c.shape == (1, 48, 24)
    # (50 - 48) // 2 = 1 and (31 - 24) // 2 = 3 pixels removed before: pixel (0, 0) was (1, 3)
    assert c[0, 0, 0] == img[0, 1, 3]
    np.testing.assert_allclose(c.affine[:3, 3].numpy(), [1, 3, 0])
    p = crop_or_pad_to_multiple(img, 24, "pad")
    assert p.shape == (1, 72, 48) and p[0, 11, 8] == img[0, 0, 0] and p[0, 0, 0] == 0
    np.testing.assert_allclose(p.affine[:3, 3].numpy(), [-11, -8, 0])
    with pytest.raises(InputError, match="pad it instead"):
        crop_or_pad_to_multiple(img, 64)
    d = CropToMultipled(["image"], multiple=8)({"image": img})
    assert d["image"].shape == (1, 48, 24)


def test_exact_kspace_crop_refuses_sizes_it_cannot_honour():
    assert exact_lr_size(48, 1.5) == 32 and exact_lr_size(48, 8) == 6
    with pytest.raises(InputError, match="not an integer"):
        exact_lr_size(50, 3)
    with pytest.raises(InputError, match=">= 1"):
        exact_lr_size(48, 0.5)
    img = MetaTensor(torch.rand(1, 48, 24), affine=torch.eye(4))
    out = ExactKSpaceCropd(["image"])({"image": img, "scale": 3.0})
    assert out["image"].shape == (1, 16, 8)
    np.testing.assert_allclose(coords.spacing_from_affine(out["image"].affine.numpy())[:2], [3, 3])
    with pytest.raises(InputError, match="cannot be k-space cropped by x5"):
        ExactKSpaceCropd(["image"])({"image": img, "scale": 5.0})


def test_paired_patches_fixed_scales():
    torch.manual_seed(0)
    t = RandPairedScalePatchd(scales=(2.5, 1.0), lr_patch_size=8, flip=False, rotate90=False, min_foreground=0)
    t.set_random_state(1)
    hr_t, hr_r = torch.rand(1, 40, 44), torch.rand(1, 40, 44)
    out = t({"image": hr_t, "reference": hr_r})
    assert out["image"].shape == (1, 8, 8)
    assert out["label"].shape == (1, 20, 20) and out["reference"].shape == (1, 20, 20)
    assert float(out["scale"]) == 2.5 and float(out["ref_scale"]) == 1.0 and out["reference_type"] == "HR"
    # label and reference are the same crop of the two images; the LR is the k-space crop of the label
    match = [(y, x) for y in range(21) for x in range(25) if torch.equal(hr_t[:, y : y + 20, x : x + 20], out["label"])]
    assert len(match) == 1
    y, x = match[0]
    assert torch.equal(hr_r[:, y : y + 20, x : x + 20], out["reference"])
    lr = KSpaceCrop(2.5)(out["label"], affine=np.eye(3))
    assert torch.allclose(torch.as_tensor(lr).float(), out["image"], atol=1e-5)
    lr_ref = RandPairedScalePatchd(scales=(2.0, 2.0), lr_patch_size=8)({"image": hr_t, "reference": hr_r})
    assert lr_ref["reference"].shape == (1, 8, 8) and lr_ref["reference_type"] == "LR"


def test_paired_patches_augmentation_is_shared_and_complex_channels():
    base = torch.rand(1, 16, 16)
    t = RandPairedScalePatchd(scales=(1.0, 1.0), lr_patch_size=16, min_foreground=0)
    seen = set()
    for seed in range(12):
        t.set_random_state(seed)
        out = t({"image": base, "reference": base * 2})
        assert torch.allclose(out["reference"], out["label"] * 2)  # same flips/rotation for both
        seen.add(tuple(out["label"].flatten()[:3].tolist()))
    assert len(seen) > 3
    c = RandPairedScalePatchd(scales=(2.0, 1.0), lr_patch_size=6, complex_input=True, output="complex",
                              min_foreground=0)
    out = c({"image": torch.rand(2, 20, 20), "reference": torch.rand(2, 20, 20)})
    assert out["image"].shape == (2, 6, 6) and out["label"].shape == (2, 12, 12)
    m = RandPairedScalePatchd(scales=(2.0, 1.0), lr_patch_size=6, complex_input=True, output="magnitude",
                              min_foreground=0)
    out = m({"image": torch.rand(2, 20, 20), "reference": torch.rand(2, 20, 20)})
    assert out["image"].shape == (1, 6, 6)
    assert out["label"].shape == (1, 12, 12) and out["reference"].shape == (1, 12, 12)


def test_paired_patches_errors():
    t = RandPairedScalePatchd(scales=(4.0, 1.0), lr_patch_size=8)
    with pytest.raises(InputError, match="channels"):
        t({"image": torch.rand(1, 40, 40), "reference": torch.rand(2, 40, 40)})
    with pytest.raises(InputError, match="smaller than"):
        t({"image": torch.rand(1, 20, 20), "reference": torch.rand(1, 20, 20)})
    with pytest.raises(InputError, match="co-registered"):
        t({"image": torch.rand(1, 40, 40), "reference": torch.rand(1, 40, 41)})
    with pytest.raises(ValueError):
        RandPairedScalePatchd(lr_patch_size=8)  # neither a state nor fixed scales
