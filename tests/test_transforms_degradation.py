"""Degradation transforms: physical geometry of every output grid, operator values, noise statistics, errors."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor, set_track_meta
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, SaveImaged
from monai.utils import set_determinism

from monai_inr import coords
from monai_inr.transforms import (
    DEGRADATION_KEY,
    DEGRADATION_SCALE_KEY,
    CubicDownsample,
    CubicDownsampled,
    KSpaceCrop,
    KSpaceCropd,
    RandRicianNoise,
    RandRicianNoised,
    StrideDecimation,
    StrideDecimationd,
    ThickSliceAcquisition,
    ThickSliceAcquisitiond,
    resize_cell_centred,
    slice_profile_matrix,
)


def oblique_affine(spacing=(1.0, 1.5, 2.0), origin=(-30.0, 12.0, 7.5), angle=0.3) -> np.ndarray:
    """A rotated, anisotropic voxel-to-world affine so axis mix-ups cannot cancel out."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
        [[1.0, 0.0, 0.0], [0.0, math.cos(0.2), -math.sin(0.2)], [0.0, math.sin(0.2), math.cos(0.2)]]
    )
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag(spacing)
    a[:3, 3] = origin
    return a


def world_of_voxels(shape, affine) -> np.ndarray:
    """World coordinates ``(*shape, 3)`` of every voxel centre of a 3D grid."""
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float64)
    return coords.voxel_to_world(idx, affine)


def fov_centre(shape, affine) -> np.ndarray:
    return coords.voxel_to_world((np.asarray(shape, dtype=np.float64) - 1) / 2, affine)


def check_fov_grid(out, in_shape, in_affine):
    """Output covers the input FOV: centre kept, first voxel centre at (f-1)/2 input voxels, spacing x f."""
    out_shape = np.asarray(out.shape[1:])
    a_out = out.affine.numpy()
    f = np.asarray(in_shape) / out_shape
    np.testing.assert_allclose(fov_centre(out_shape, a_out), fov_centre(in_shape, in_affine), atol=1e-9)
    first = coords.voxel_to_world(np.zeros(3), a_out)
    np.testing.assert_allclose(first, coords.voxel_to_world((f - 1) / 2, in_affine), atol=1e-9)
    np.testing.assert_allclose(coords.spacing_from_affine(a_out), coords.spacing_from_affine(in_affine) * f, rtol=1e-12)
    np.testing.assert_allclose(out.meta[DEGRADATION_SCALE_KEY], f, rtol=1e-12)


def linear_world(world: np.ndarray) -> np.ndarray:
    return 0.02 * world[..., 0] - 0.03 * world[..., 1] + 0.05 * world[..., 2] + 1.0


# ------------------------------------------------------------------------------------------- resize_cell_centred


@pytest.mark.parametrize("out_shape", [(4, 6, 3), (13, 9, 10)])
def test_resize_order1_matches_torch_trilinear_align_corners_false(out_shape):
    x = torch.rand(2, 8, 7, 5, generator=torch.Generator().manual_seed(0))
    ours = resize_cell_centred(x, out_shape, order=1)
    ref = F.interpolate(x[None].double(), size=out_shape, mode="trilinear", align_corners=False)[0].float()
    assert isinstance(ours, torch.Tensor) and ours.dtype == torch.float32 and ours.shape == (2, *out_shape)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_resize_types_identity_and_errors():
    x = np.random.default_rng(1).random((6, 5, 4))
    same = resize_cell_centred(x, (6, 5, 4), order=3)
    assert isinstance(same, np.ndarray) and same.dtype == np.float32 and same.shape == (6, 5, 4)
    np.testing.assert_allclose(same, x, atol=1e-6)
    with pytest.raises(ValueError, match="does not match"):
        resize_cell_centred(x, (3,))


# ----------------------------------------------------------------------------------------------- cubic downsampling


@pytest.mark.parametrize("scale, in_shape", [(2.0, (20, 16, 12)), ((2.5, 3.0, 1.7), (17, 15, 12))])
def test_cubic_downsample_geometry(scale, in_shape):
    aff = oblique_affine()
    x = MetaTensor(torch.rand(1, *in_shape), affine=aff)
    out = CubicDownsample(scale)(x)
    expected = coords.scaled_shape(in_shape, [1 / s for s in np.broadcast_to(scale, 3)])
    assert tuple(out.shape) == (1, *expected) and out.dtype == torch.float32
    check_fov_grid(out, in_shape, aff)
    assert out.meta[DEGRADATION_KEY].startswith("cubic(")


def test_cubic_downsample_values_sit_at_their_world_positions():
    """A linear function of world position is reproduced (interior) at the LR voxels' world positions."""
    aff = oblique_affine()
    shape = (32, 30, 28)
    x = MetaTensor(torch.as_tensor(linear_world(world_of_voxels(shape, aff))[None], dtype=torch.float32), affine=aff)
    out = CubicDownsample(2.0)(x)
    expected = linear_world(world_of_voxels(out.shape[1:], out.affine.numpy()))
    np.testing.assert_allclose(out[0, 2:-2, 2:-2, 2:-2].numpy(), expected[2:-2, 2:-2, 2:-2], atol=2e-4)


def test_cubic_downsample_numpy_with_explicit_affine_and_input_untouched():
    aff = oblique_affine()
    x = np.random.default_rng(2).random((1, 12, 10, 8)).astype(np.float32)
    before = x.copy()
    out = CubicDownsample(2)(x, affine=aff)
    assert isinstance(out, MetaTensor)
    check_fov_grid(out, (12, 10, 8), aff)
    np.testing.assert_array_equal(out.numpy(), resize_cell_centred(x, (6, 5, 4), order=3))
    np.testing.assert_array_equal(x, before)


def test_cubic_downsampled_keys_orders_and_chained_scale():
    aff = oblique_affine()
    img = MetaTensor(torch.rand(1, 12, 12, 12), affine=aff)
    lab = MetaTensor(torch.randint(0, 3, (1, 12, 12, 12)).float(), affine=aff)
    d = CubicDownsampled(("image", "label"), scale=2, order=(3, 0))({"image": img, "label": lab, "id": 7})
    assert d["id"] == 7 and d["image"].shape == d["label"].shape == (1, 6, 6, 6)
    assert set(np.unique(d["label"].numpy())) <= {0.0, 1.0, 2.0}
    torch.testing.assert_close(d["image"].affine, d["label"].affine)
    twice = CubicDownsample(1.5)(d["image"])
    np.testing.assert_allclose(twice.meta[DEGRADATION_SCALE_KEY], [3.0] * 3)  # 12 -> 6 -> 4
    assert twice.meta[DEGRADATION_KEY] == "cubic(2,2,2) + cubic(1.5,1.5,1.5)"


def test_cubic_downsample_saveimaged_writes_the_new_geometry(tmp_path):
    aff = oblique_affine()
    src = tmp_path / "hr.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(3).random((10, 8, 6)).astype(np.float32), aff), str(src))
    pipeline = Compose(
        [
            LoadImaged("image", image_only=True),
            EnsureChannelFirstd("image"),
            CubicDownsampled("image", scale=2),
            SaveImaged("image", output_dir=str(tmp_path), output_postfix="lr", separate_folder=False, print_log=False),
        ]
    )
    pipeline({"image": str(src)})
    written = nib.load(str(tmp_path / "hr_lr.nii.gz"))
    assert written.shape == (5, 4, 3)
    np.testing.assert_allclose(written.affine, coords.fov_affine(aff, (10, 8, 6), (5, 4, 3)), atol=1e-5)
    np.testing.assert_allclose(fov_centre((5, 4, 3), written.affine), fov_centre((10, 8, 6), aff), atol=1e-5)


@pytest.mark.parametrize(
    "bad, message", [(0, "positive"), (-2.0, "positive"), (0.5, ">= 1"), ((2.0, 0.9, 2.0), ">= 1")]
)
def test_bad_downsampling_scales_raise(bad, message):
    with pytest.raises(ValueError, match=message):
        CubicDownsample(bad)
    with pytest.raises(ValueError, match=message):
        KSpaceCrop(bad)


def test_without_meta_tracking_returns_plain_tensor_and_geometry_is_available():
    set_track_meta(False)
    try:
        t = CubicDownsample(2)
        out = t(torch.rand(1, 8, 8, 8))
        assert type(out) is torch.Tensor and out.shape == (1, 4, 4, 4)
    finally:
        set_track_meta(True)
    shape, a = t.output_geometry((8, 8, 8), oblique_affine())
    assert shape == (4, 4, 4)
    np.testing.assert_allclose(a, coords.fov_affine(oblique_affine(), (8, 8, 8), (4, 4, 4)))


# -------------------------------------------------------------------------------------------------- k-space crop


def periodic_bandlimited(world, hr_shape, hr_affine, max_freq):
    """A real signal periodic over the HR FOV with frequencies below ``max_freq`` cycles/FOV per axis (axes 0, 1)."""
    t = (np.asarray(coords.world_to_voxel(world, hr_affine)) + 0.5) / np.asarray(hr_shape)
    v = 0.7 + 0.0 * t[..., 0]
    for ax in (0, 1):
        for f in range(1, int(max_freq[ax]) + 1):
            v = v + np.cos(2 * np.pi * f * t[..., ax] + 0.3 * f + ax) / (f + ax + 1)
    return v


@pytest.mark.parametrize("align", ["cell", "dft"])
@pytest.mark.parametrize("hr, lr", [((12, 15), (6, 5)), ((12, 9), (5, 6))])
def test_kspace_crop_of_bandlimited_signal_is_exact_at_output_world_positions(align, hr, lr):
    """Every parity: LR values equal the continuous signal at the LR voxel centres given by the output affine."""
    aff = oblique_affine()
    shape = (*hr, 3)
    max_freq = [(m - 1) // 2 for m in lr]  # strictly inside the kept band
    x = periodic_bandlimited(world_of_voxels(shape, aff), shape, aff, max_freq)
    img = MetaTensor(torch.as_tensor(x[None]), affine=aff)  # float64 for an exactness check
    out = KSpaceCrop((hr[0] / lr[0], hr[1] / lr[1]), spatial_axes=(0, 1), output="complex", align=align)(img)
    assert tuple(out.shape) == (2, *lr, 3)
    expected = periodic_bandlimited(world_of_voxels(out.shape[1:], out.affine.numpy()), shape, aff, max_freq)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=2e-5)
    np.testing.assert_allclose(out[1].numpy(), 0.0, atol=2e-5)
    if align == "cell":
        check_fov_grid(out, shape, aff)


@pytest.mark.parametrize("n, m", [(217, 94), (216, 72), (33, 16), (32, 11)])
def test_bandlimited_sampling_on_the_lr_grid_is_the_cell_aligned_kspace_crop(n, m):
    """Sampling the truncated spectrum at the cell-centred LR positions reproduces the whole-image k-space crop
    (every parity), and between them it interpolates that same band-limited image."""
    from monai_inr.transforms.functional import bandlimited_sample, kspace_crop

    torch.manual_seed(n)
    x = torch.rand(2, n, n + 3, dtype=torch.float64)
    sizes = (m, m + 1)
    grid = [(np.arange(k) + 0.5) * (x.shape[1 + i] / k) - 0.5 for i, k in enumerate(sizes)]
    expected = kspace_crop(x, sizes, dims=(1, 2))
    torch.testing.assert_close(bandlimited_sample(x, sizes, grid, dims=(1, 2)), expected, atol=1e-10, rtol=0)
    window = bandlimited_sample(x, sizes, [grid[0][3:7], grid[1][2:5]], dims=(1, 2))
    torch.testing.assert_close(window, expected[:, 3:7, 2:5], atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="cannot keep"):
        bandlimited_sample(x, (n + 1, m), grid, dims=(1, 2))


def test_kspace_crop_amplitude_keeps_mean_intensity():
    shape = (16, 16, 16)
    g = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    smooth = 0.2 + np.exp(-(((g - 7.5) / 4.0) ** 2).sum(-1)).astype(np.float32)
    img = MetaTensor(torch.as_tensor(smooth[None]), affine=oblique_affine())
    out = KSpaceCrop(2.0)(img)
    assert out.shape == (1, 8, 8, 8)
    assert abs(out.mean().item() / smooth.mean() - 1) < 0.02
    raw = KSpaceCrop(2.0, output="real", amplitude_correction=False)(img)
    assert abs(raw.mean().item() / smooth.mean() - 2**1.5) < 1e-3  # unitary crop gain: sqrt(N/M) per axis


def test_kspace_cropd_channels_axes_and_complex_roundtrip():
    aff = oblique_affine()
    x = MetaTensor(torch.rand(3, 12, 10, 6), affine=aff)
    d = KSpaceCropd("image", scale=2, spatial_axes=(0, 1), output="complex")({"image": x})
    assert d["image"].shape == (6, 6, 5, 6)
    check_fov_grid(d["image"], (12, 10, 6), aff)
    same = KSpaceCrop(1.0, output="complex", complex_input=True)(d["image"])
    torch.testing.assert_close(same.as_tensor(), d["image"].as_tensor(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="channel pairs"):
        KSpaceCrop(2.0, complex_input=True)(x)


# ------------------------------------------------------------------------------------------------ thick slices


@pytest.mark.parametrize("profile", ["box", "gaussian", "none"])
def test_thick_slice_constant_along_axis_is_unchanged(profile):
    aff = oblique_affine()
    base = torch.rand(1, 7, 6, 1)
    img = MetaTensor(base.expand(1, 7, 6, 16).clone(), affine=aff)
    out = ThickSliceAcquisition(axis=2, factor=4, profile=profile)(img)
    assert out.shape == (1, 7, 6, 4)
    torch.testing.assert_close(out.as_tensor(), base.expand(1, 7, 6, 4), atol=1e-5, rtol=1e-5)
    check_fov_grid(out, (7, 6, 16), aff)


def test_thick_slice_box_is_mean_of_factor_voxels():
    x = torch.rand(2, 12, 5, 4, generator=torch.Generator().manual_seed(4))
    out = ThickSliceAcquisition(axis=0, factor=3, profile="box")(x, affine=oblique_affine())
    torch.testing.assert_close(out.as_tensor(), x.reshape(2, 4, 3, 5, 4).mean(2), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("profile, factor, atol", [("box", 2, 1e-5), ("box", 2.5, 0.1), ("gaussian", 2.5, 1e-4)])
def test_thick_slice_linear_signal_sampled_at_slice_centres(profile, factor, atol):
    """Symmetric profiles keep a linear function: slice values equal the function at the slice-centre world position.

    Exact for whole-voxel boxes; a non-integer box weights partial voxels of the piecewise-constant HR model by their
    overlap, which is only first-order exact (error < one gradient step).
    """
    aff = oblique_affine()
    shape = (6, 5, 20)
    x = MetaTensor(torch.as_tensor(linear_world(world_of_voxels(shape, aff))[None]), affine=aff)
    out = ThickSliceAcquisitiond("image", axis=-1, factor=factor, profile=profile)({"image": x})["image"]
    assert out.shape == (1, 6, 5, round(20 / factor))
    check_fov_grid(out, shape, aff)
    expected = linear_world(world_of_voxels(out.shape[1:], out.affine.numpy()))
    np.testing.assert_allclose(out[0, ..., 1:-1].numpy(), expected[..., 1:-1], atol=atol)


def test_slice_profile_rows_and_nondivisible_sizes():
    m = slice_profile_matrix(10, 3, "box")  # spacing 10/3 voxels, contiguous slabs
    np.testing.assert_allclose(m.sum(1), 1.0)
    np.testing.assert_allclose(m.sum(0), 0.3, atol=1e-12)  # every HR voxel contributes exactly once in total
    with pytest.raises(ValueError, match=">= 1"):
        ThickSliceAcquisition(axis=0, factor=0.5)
    with pytest.raises(ValueError, match="out of range"):
        ThickSliceAcquisition(axis=3, factor=2)(torch.rand(1, 4, 4, 4))


# ------------------------------------------------------------------------------------------------- Rician noise


def test_rician_noise_background_statistics_and_range_relative_sigma():
    zero = MetaTensor(torch.zeros(1, 24, 24, 24), affine=oblique_affine())
    t = RandRicianNoise(prob=1.0, std=0.4, value_range=(0.0, 1.0), sample_std=False)
    t.set_random_state(0)
    out = t(zero)
    assert isinstance(out, MetaTensor) and torch.equal(out.affine, zero.affine)
    assert abs(out.mean().item() / (0.4 * math.sqrt(math.pi / 2)) - 1) < 0.02
    wide = RandRicianNoise(prob=1.0, std=0.1, value_range=(0.0, 4.0), sample_std=False)
    wide.set_random_state(0)
    assert abs(wide(zero).mean().item() / (0.4 * math.sqrt(math.pi / 2)) - 1) < 0.02
    assert torch.count_nonzero(zero) == 0  # input untouched


def test_rician_noise_renormalise_and_determinism():
    x = torch.rand(2, 8, 8, 8, generator=torch.Generator().manual_seed(5))
    before = x.clone()
    kw = dict(
        keys="image", prob=1.0, std=0.4, value_range=(0.0, 1.0), sample_std=False, renormalize=True, channel_wise=True
    )
    a = RandRicianNoised(**kw).set_random_state(11)({"image": x})["image"]
    b = RandRicianNoised(**kw).set_random_state(11)({"image": x})["image"]
    c = RandRicianNoised(**kw).set_random_state(12)({"image": x})["image"]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    torch.testing.assert_close(a.amin(dim=(1, 2, 3)), torch.zeros(2))
    torch.testing.assert_close(a.amax(dim=(1, 2, 3)), torch.ones(2))
    torch.testing.assert_close(x, before)
    runs = []
    for _ in range(2):
        set_determinism(seed=3)
        runs.append(Compose([RandRicianNoised(**kw)])({"image": x})["image"])
    set_determinism(seed=None)
    torch.testing.assert_close(runs[0], runs[1])
    with pytest.raises(ValueError, match="not both"):
        RandRicianNoise(relative=True, value_range=(0, 1))


# --------------------------------------------------------------------------------------------- stride decimation


def test_stride_decimation_values_and_affine():
    aff = oblique_affine()
    x = MetaTensor(torch.rand(1, 10, 9, 7), affine=aff)
    out = StrideDecimation(3, spatial_axes=(0, 1))(x)
    assert out.shape == (1, 4, 3, 7)
    torch.testing.assert_close(out.as_tensor(), x.as_tensor()[:, ::3, ::3, :])
    a_out = out.affine.numpy()
    np.testing.assert_allclose(coords.voxel_to_world(np.zeros(3), a_out), coords.voxel_to_world(np.zeros(3), aff))
    np.testing.assert_allclose(coords.spacing_from_affine(a_out), coords.spacing_from_affine(aff) * [3, 3, 1])
    # LR voxel (i, j, k) is HR voxel (3i, 3j, k) in world space
    lr_idx = np.array([[3.0, 2.0, 5.0], [1.0, 0.0, 6.0]])
    np.testing.assert_allclose(
        coords.voxel_to_world(lr_idx, a_out), coords.voxel_to_world(lr_idx * [3, 3, 1], aff), atol=1e-9
    )
    np.testing.assert_allclose(out.meta[DEGRADATION_SCALE_KEY], [3.0, 3.0, 1.0])
    d = StrideDecimationd("image", k=(2, 3, 1))({"image": x})
    assert d["image"].shape == (1, 5, 3, 7)
    with pytest.raises(ValueError, match="positive integer"):
        StrideDecimation(1.5)


@pytest.mark.parametrize(
    "transform",
    [CubicDownsample(2), KSpaceCrop(2), ThickSliceAcquisition(1, 2.5, "gaussian")],
    ids=["cubic", "kspace", "thick_slice"],
)
def test_2d_images_with_monai_4x4_affines_keep_the_fov_centre(transform):
    aff = oblique_affine()
    x = MetaTensor(torch.rand(1, 12, 10), affine=aff)  # MONAI keeps 4x4 affines for 2D images
    out = transform(x)
    centre = lambda sh, a: coords.voxel_to_world(np.r_[(np.asarray(sh, float) - 1) / 2, 0.0], a)  # noqa: E731
    assert out.affine.shape == (4, 4)
    np.testing.assert_allclose(centre(out.shape[1:], out.affine.numpy()), centre((12, 10), aff), atol=1e-9)


def test_per_item_scale_key_for_evaluation_datalists():
    aff = oblique_affine()
    x = MetaTensor(torch.rand(1, 20, 15, 10), affine=aff)
    t = CubicDownsampled("image", scale_key="scale")
    out = t({"image": x, "scale": 2.5})
    assert out["scale"] == 2.5 and out["image"].shape == (1, 8, 6, 4)
    check_fov_grid(out["image"], (20, 15, 10), aff)
    k = KSpaceCropd("image", scale=2.0, scale_key="scale")
    assert k({"image": x})["image"].shape == (1, 10, 8, 5)  # falls back to scale (round(7.5) = 8)
    assert k({"image": x, "scale": torch.tensor([4.0, 3.0, 2.0])})["image"].shape == (1, 5, 5, 5)
    with pytest.raises(ValueError, match="no scale given"):
        t({"image": x})
    with pytest.raises(ValueError, match="scale_key"):
        CubicDownsampled("image")


# ------------------------------------------------------------------------------------------------ complex images


def test_smooth_phase_keeps_magnitude_and_geometry_and_is_smooth():
    from monai_inr.transforms import RandSmoothPhase, RandSmoothPhased

    aff = oblique_affine()
    mag = MetaTensor(0.2 + torch.rand(2, 64, 48, 6), affine=aff)
    out = RandSmoothPhase(amplitude=1.0, seed=3)(mag)
    assert out.shape == (4, 64, 48, 6)
    np.testing.assert_allclose(np.asarray(out.affine), np.asarray(aff))
    z = torch.complex(out[0::2].as_tensor(), out[1::2].as_tensor())
    torch.testing.assert_close(z.abs(), mag.as_tensor(), atol=1e-6, rtol=1e-6)
    phase = torch.angle(z[0] * torch.exp(-1j * torch.angle(z[0, 32, 24, 3])))
    assert float(phase.std()) > 0.3  # a real phase field, not a constant
    step = torch.angle(z[0, 1:] * z[0, :-1].conj()).abs().max()
    assert float(step) < 0.5  # smooth: under 0.5 rad between neighbouring voxels (a random phase: up to pi)
    again = RandSmoothPhase(amplitude=1.0, seed=3)(mag)
    assert torch.equal(again.as_tensor(), out.as_tensor())
    d = RandSmoothPhased(["image", "reference"], seed=0)({"image": mag[:1], "reference": mag[:1]})
    assert d["image"].shape == (2, 64, 48, 6) and not torch.allclose(d["image"], d["reference"])
    with pytest.raises(ValueError, match="amplitude"):
        RandSmoothPhase(amplitude=-1.0)


def test_complex_rician_noise_is_complex_gaussian_with_the_snr_of_the_magnitude():
    from monai_inr.transforms import RandRicianNoiseSNR

    torch.manual_seed(0)
    re = torch.full((1, 64, 64, 8), 0.6)
    im = torch.full((1, 64, 64, 8), 0.8)  # magnitude 1
    clean = torch.cat([re, im])
    t = RandRicianNoiseSNR(snr_range=20.0, complex_input=True)
    t.set_random_state(1)
    out = t(clean, reference=1.0)
    noise = out.as_tensor() - clean
    assert out.shape == (2, 64, 64, 8)
    assert abs(float(noise.std()) - 0.05) < 0.002 and abs(float(noise.mean())) < 0.002  # sigma = 1 / 20 per component
    assert abs(float(t.last["sigma"]) - 0.05) < 1e-9
    with pytest.raises(ValueError, match="channel pairs"):
        t(torch.rand(3, 8, 8, 8), reference=1.0)
