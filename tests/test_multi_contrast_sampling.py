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
    # label and reference are the same crop of the two images
    match = [(y, x) for y in range(21) for x in range(25) if torch.equal(hr_t[:, y : y + 20, x : x + 20], out["label"])]
    assert len(match) == 1
    y, x = match[0]
    assert torch.equal(hr_r[:, y : y + 20, x : x + 20], out["reference"])
    lr_ref = RandPairedScalePatchd(scales=(2.0, 2.0), lr_patch_size=8)({"image": hr_t, "reference": hr_r})
    assert lr_ref["reference"].shape == (1, 8, 8) and lr_ref["reference_type"] == "LR"


def test_per_patch_synthesis_is_the_kspace_crop_of_the_label():
    t = RandPairedScalePatchd(scales=(2.5, 1.0), lr_patch_size=8, flip=False, rotate90=False, min_foreground=0,
                              lr_synthesis="patch")
    t.set_random_state(1)
    out = t({"image": torch.rand(1, 40, 44), "reference": torch.rand(1, 40, 44)})
    lr = KSpaceCrop(2.5)(out["label"], affine=np.eye(3))
    assert torch.allclose(torch.as_tensor(lr).float(), out["image"], atol=1e-5)
    with pytest.raises(ValueError, match="lr_synthesis"):
        RandPairedScalePatchd(scales=(2.0, 1.0), lr_synthesis="crop")


def _find_crop(image, label):
    n = label.shape[-1]
    hits = [(y, x) for y in range(image.shape[1] - n + 1) for x in range(image.shape[2] - n + 1)
            if torch.equal(image[:, y : y + n, x : x + n], label)]
    assert len(hits) == 1
    return hits[0]


def test_whole_slice_synthesis_is_a_window_of_the_whole_slice_kspace_crop():
    """Where the patch sits on the whole slice's LR grid, the training LR patch (and an LR reference) are exactly
    the matching window of the k-space truncation of the whole slice: truncate the slice, then cut paired crops."""
    torch.manual_seed(3)
    hr_t, hr_r = torch.rand(1, 40, 45), torch.rand(1, 40, 45)
    full_t = torch.as_tensor(KSpaceCrop(2.5)(hr_t, affine=np.eye(3))).float()  # 16 x 18, the whole-slice LR
    full_r = torch.as_tensor(KSpaceCrop(5.0)(hr_r, affine=np.eye(3))).float()  # 8 x 9, the reference at x5
    t = RandPairedScalePatchd(scales=(2.5, 5.0), lr_patch_size=8, flip=False, rotate90=False, min_foreground=0)
    aligned = 0
    for seed in range(300):
        t.set_random_state(seed)
        out = t({"image": hr_t, "reference": hr_r})
        y, x = _find_crop(hr_t, out["label"])
        if y % 5 == 0 and x % 5 == 0:  # on the LR grid of both the target (x2.5) and the reference (x5)
            aligned += 1
            j, k = int(y / 2.5), int(x / 2.5)
            torch.testing.assert_close(out["image"], full_t[:, j : j + 8, k : k + 8], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out["reference"], full_r[:, y // 5 : y // 5 + 4, x // 5 : x // 5 + 4],
                                       atol=1e-5, rtol=1e-5)
    assert aligned >= 2


@pytest.mark.parametrize("synthesis, exact", [("slice", True), ("patch", False)])
def test_training_lr_patch_has_no_patch_edge_ringing(synthesis, exact):
    """A slice band-limited below the LR band: the whole-slice LR patch equals the continuous image at its LR voxel
    centres for any placement (physical geometry of the pair: LR voxel i tiles HR voxels [i s, (i + 1) s)); a
    per-patch truncation wraps the crop around and rings at its edges."""
    n = (48, 54)
    yy, xx = np.meshgrid(np.arange(n[0], dtype=np.float64), np.arange(n[1], dtype=np.float64), indexing="ij")

    def image(u, v):  # periodic over the slice, frequencies well inside the x3 band (48 / 3 = 16 kept)
        return 0.5 + 0.2 * np.cos(2 * np.pi * 3 * u / n[0] + 0.3) + 0.15 * np.sin(2 * np.pi * 5 * v / n[1] - 0.7) \
            + 0.1 * np.cos(2 * np.pi * (2 * u / n[0] + 4 * v / n[1]))

    hr = torch.as_tensor(image(yy, xx)[None]).float()
    t = RandPairedScalePatchd(scales=(3.0, 1.0), lr_patch_size=6, flip=False, rotate90=False, min_foreground=0,
                              lr_synthesis=synthesis)
    worst = 0.0
    for seed in range(5):
        t.set_random_state(seed)
        out = t({"image": hr, "reference": hr})
        y, x = _find_crop(hr, out["label"])
        centres = (np.arange(6) + 0.5) * 3.0 - 0.5
        expected = image(y + centres[:, None], x + centres[None, :])
        worst = max(worst, float(np.abs(out["image"][0].numpy() - expected).max()))
    assert (worst < 1e-4) if exact else (worst > 1e-2)


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
