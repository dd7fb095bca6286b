import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage

from monai.data import MetaTensor
from monai.metrics import PSNRMetric, SSIMMetric
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from monai_inr.metrics import gaussian_window_1d, psnr, slicewise, ssim


def smooth_pair(shape, seed=0, noise=0.05):
    """Random but smooth target in [0, 1] and a perturbed prediction in [0, 1]."""
    rng = np.random.default_rng(seed)
    t = ndimage.gaussian_filter(rng.random(shape), 2.0)
    t = (t - t.min()) / (t.max() - t.min())
    p = np.clip(t + noise * ndimage.gaussian_filter(rng.standard_normal(shape), 1.0) + 0.02, 0.0, 1.0)
    return p, t


def monai_ssim(p, t, spatial_dims, **kw):
    metric = SSIMMetric(spatial_dims=spatial_dims, data_range=1.0, **kw)
    pt = torch.as_tensor(p, dtype=torch.float32)
    tt = torch.as_tensor(t, dtype=torch.float32)
    while pt.ndim < spatial_dims + 2:
        pt, tt = pt[None], tt[None]
    return float(metric(pt, tt).mean())


# --------------------------------------------------------------------------------------------------- PSNR


def test_psnr_analytic():
    t = np.zeros((4, 5, 6))
    p = np.full_like(t, 0.1)  # MSE = 0.01
    assert psnr(p, t, data_range=1.0) == pytest.approx(20.0, abs=1e-12)
    assert psnr(p, t, data_range=2.0) == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-12)
    # half the voxels wrong by 0.2 -> MSE 0.02
    p2 = t.copy()
    p2[:2] = 0.2
    assert psnr(p2, t) == pytest.approx(10 * math.log10(1 / 0.02), abs=1e-12)
    assert psnr(t, t) == math.inf
    # torch, MetaTensor and float32 inputs give the same value
    assert psnr(torch.from_numpy(p), torch.from_numpy(t)) == pytest.approx(20.0, abs=1e-12)
    assert psnr(MetaTensor(torch.from_numpy(p)), t) == pytest.approx(20.0, abs=1e-12)


def test_psnr_matches_skimage_and_monai():
    p, t = smooth_pair((16, 18, 20))
    ours = psnr(p, t, data_range=1.0)
    assert ours == pytest.approx(peak_signal_noise_ratio(t, p, data_range=1.0), abs=1e-10)
    mo = float(PSNRMetric(max_val=1.0)(torch.from_numpy(p)[None, None], torch.from_numpy(t)[None, None]))
    assert ours == pytest.approx(mo, abs=1e-6)


def test_psnr_mask_selection_vs_zeroing():
    rng = np.random.default_rng(1)
    shape = (20, 20, 20)
    mask = np.zeros(shape, bool)
    mask[4:15, 3:17, 5:12] = True
    t = np.where(mask, rng.random(shape), 0.0)
    p = np.where(mask, np.clip(t + 0.05 * rng.standard_normal(shape), 0, 1), 0.0)  # identical zero background
    in_mask = psnr(p, t, mask=mask)
    whole = psnr(p, t)
    assert whole - in_mask == pytest.approx(10 * math.log10(mask.size / mask.sum()), abs=1e-10)
    # selection == psnr on the selected voxels
    assert in_mask == pytest.approx(psnr(p[mask], t[mask]), abs=1e-12)
    # float masks (nonzero = inside) and torch masks are accepted
    assert psnr(p, t, mask=mask.astype(np.float32)) == in_mask
    assert psnr(p, t, mask=torch.from_numpy(mask)) == in_mask


@pytest.mark.parametrize("fn", [psnr, ssim])
def test_bad_input_raises(fn):
    p, t = smooth_pair((16, 16, 16))
    with pytest.raises(ValueError, match="same shape"):
        fn(p, t[:-1])
    with pytest.raises(ValueError, match="data_range must be given"):
        fn(p, t, data_range=None)
    for bad in (0, -1.0, float("nan"), "one"):
        with pytest.raises(ValueError, match="data_range"):
            fn(p, t, data_range=bad)
    with pytest.raises(ValueError, match="spans .* more than data_range"):
        fn(p * 100, t * 100, data_range=1.0)  # unnormalised data with the default data_range
    with pytest.raises(ValueError, match="selects no voxels"):
        fn(p, t, mask=np.zeros(p.shape, bool))
    with pytest.raises(ValueError, match="mask shape"):
        fn(p, t, mask=np.ones((3, 3), bool))
    bad = p.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fn(bad, t)


# --------------------------------------------------------------------------------------------------- SSIM


@pytest.mark.parametrize("shape", [(24, 24, 24), (20, 26, 23)])
def test_ssim_matches_monai_and_skimage_3d(shape):
    p, t = smooth_pair(shape)
    ours = ssim(p, t, data_range=1.0)
    assert ours == pytest.approx(monai_ssim(p, t, 3), abs=1e-4)
    sk = structural_similarity(p, t, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert ours == pytest.approx(sk, abs=1e-10)
    assert ours < 0.999  # the pair is not trivially identical


def test_ssim_matches_monai_and_skimage_2d():
    p, t = smooth_pair((48, 40), seed=3, noise=0.1)
    ours = ssim(p, t, data_range=1.0)
    assert ours == pytest.approx(monai_ssim(p, t, 2), abs=1e-4)
    sk = structural_similarity(p, t, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert ours == pytest.approx(sk, abs=1e-10)


def test_ssim_batch_channel_and_other_windows_match_monai():
    p, t = smooth_pair((2, 1, 20, 22, 21), seed=4)
    assert ssim(p, t, spatial_dims=3) == pytest.approx(monai_ssim(p, t, 3), abs=1e-4)
    p2, t2 = smooth_pair((30, 28), seed=5, noise=0.1)
    assert ssim(p2, t2, win_size=7, sigma=1.0) == pytest.approx(
        monai_ssim(p2, t2, 2, win_size=7, kernel_sigma=1.0), abs=1e-4
    )
    assert ssim(p2, t2, win_size=(7, 5), sigma=(1.0, 0.8)) == pytest.approx(
        monai_ssim(p2, t2, 2, win_size=(7, 5), kernel_sigma=(1.0, 0.8)), abs=1e-4
    )


def test_gaussian_window_matches_monai_kernel():
    from monai.metrics.regression import _gaussian_kernel

    k = _gaussian_kernel(2, 1, (11, 11), (1.5, 1.5))[0, 0].double().numpy()
    w = gaussian_window_1d(11, 1.5)
    np.testing.assert_allclose(np.outer(w, w), k, atol=1e-7)
    assert w.sum() == pytest.approx(1.0)


def test_ssim_identity_and_map():
    p, t = smooth_pair((22, 23, 24), seed=6)
    assert ssim(t, t) == pytest.approx(1.0, abs=1e-12)
    value, smap = ssim(p, t, return_map=True)
    assert smap.shape == p.shape
    valid = (slice(5, -5),) * 3
    assert np.isfinite(smap[valid]).all()
    border = np.ones(p.shape, bool)
    border[valid] = False
    assert np.isnan(smap[border]).all()
    assert value == pytest.approx(smap[valid].mean(), abs=1e-14)
    # workers do not change the result
    assert ssim(p, t, workers=1) == ssim(p, t, workers=2) == value


def test_ssim_mask_uses_valid_region_only():
    p, t = smooth_pair((24, 24, 24), seed=7)
    _, smap = ssim(p, t, return_map=True)
    mask = np.zeros(p.shape, bool)
    mask[2:16, 8:20, 3:22] = True  # partly inside the 5-voxel border band
    expected = np.nanmean(np.where(mask, smap, np.nan))
    assert ssim(p, t, mask=mask) == pytest.approx(expected, abs=1e-14)
    assert ssim(t, t, mask=mask) == pytest.approx(1.0, abs=1e-12)
    band_only = np.zeros(p.shape, bool)
    band_only[:3] = True
    with pytest.warns(UserWarning, match="border band"):
        assert math.isnan(ssim(p, t, mask=band_only))


def test_ssim_constant_images_are_finite():
    t = np.full((16, 16), 0.5)
    assert ssim(np.zeros_like(t), t) == pytest.approx(ssim(np.zeros((16, 16)), t))
    assert math.isfinite(ssim(np.zeros_like(t), t))
    assert ssim(t, t) == pytest.approx(1.0)


def test_ssim_window_errors():
    p, t = smooth_pair((16, 16, 8))
    with pytest.raises(ValueError, match="odd"):
        ssim(p, t, win_size=4)
    with pytest.raises(ValueError, match="exceeds the image extent"):
        ssim(p, t)
    with pytest.raises(ValueError, match="spatial_dims"):
        ssim(p, t, spatial_dims=4)
    with pytest.raises(ValueError, match="one value per spatial axis"):
        ssim(p, t, win_size=(3, 3))


# --------------------------------------------------------------------------------------------------- slicewise


def test_slicewise_averages_over_all_slices_of_all_axes():
    p, t = smooth_pair((12, 14, 16), seed=8)
    manual = [psnr(np.take(p, i, axis=a), np.take(t, i, axis=a)) for a in range(3) for i in range(p.shape[a])]
    assert slicewise(psnr, p, t, data_range=1.0) == pytest.approx(np.mean(manual), abs=1e-12)
    value, vals = slicewise(psnr, p, t, axes=(2,), return_values=True)
    assert set(vals) == {2} and vals[2].shape == (16,)
    assert value == pytest.approx(vals[2].mean())


def test_slicewise_foreground_and_masked():
    p, t = smooth_pair((12, 14, 16), seed=9)
    t[:3] = 0.0  # empty slices along axis 0
    mask = np.zeros(t.shape, bool)
    mask[5:9, 2:12, 3:14] = True
    v, vals = slicewise(psnr, p, t, axes=(0,), return_values=True)
    assert np.isnan(vals[0][:3]).all() and np.isfinite(vals[0][3:]).all()
    v_all = slicewise(psnr, p, t, axes=(0,), foreground_only=False)
    assert v_all != v
    v, vals = slicewise(psnr, p, t, axes=(0,), mask=mask, masked=True, return_values=True)
    kept = np.flatnonzero(np.isfinite(vals[0]))
    np.testing.assert_array_equal(kept, np.arange(5, 9))
    assert vals[0][6] == pytest.approx(psnr(p[6], t[6], mask=mask[6]))
    # no-reference metric: metric_fn(pred_slice) only
    assert slicewise(lambda x: float(x.mean()), p, axes=(0, 1, 2), foreground_only=False) == pytest.approx(p.mean())
    with pytest.raises(ValueError, match="masked=True needs a mask"):
        slicewise(psnr, p, t, masked=True)
    with pytest.raises(ValueError, match="same shape"):
        slicewise(psnr, p, t[1:])


def test_slicewise_ssim_2d_matches_monai():
    p, t = smooth_pair((14, 16, 15), seed=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = slicewise(ssim, p, t, axes=(2,), data_range=1.0)
    mo = np.mean([monai_ssim(p[..., k], t[..., k], 2) for k in range(p.shape[2])])
    assert ours == pytest.approx(mo, abs=1e-4)


def test_high_frequency_ratio_is_one_for_the_truth_low_for_blur_high_for_grain():
    """Along the thick axis: the truth scores 1, a blurred copy < 1, a copy with slice-to-slice grain > 1; the other
    axes do not enter."""
    from scipy import ndimage

    from monai_inr.metrics import high_frequency_ratio

    rng = np.random.default_rng(0)
    truth = ndimage.gaussian_filter(rng.random((24, 24, 32)), 1.0)
    mask = np.zeros(truth.shape, bool)
    mask[4:20, 4:20, 4:28] = True
    blurred = ndimage.gaussian_filter1d(truth, 2.0, axis=2)
    grain = truth + 0.05 * np.where(np.arange(32) % 2 == 0, 1.0, -1.0)[None, None, :] * rng.random((24, 24, 1))
    assert high_frequency_ratio(truth, truth, axis=2, mask=mask) == pytest.approx(1.0)
    assert high_frequency_ratio(blurred, truth, axis=2, mask=mask) < 0.3
    assert high_frequency_ratio(grain, truth, axis=2, mask=mask) > 2.0
    in_plane = ndimage.gaussian_filter1d(truth, 2.0, axis=0)  # blur across another axis changes little along axis 2
    assert 0.3 < high_frequency_ratio(in_plane, truth, axis=2, mask=mask) < 1.0
    # the error's fine detail: none for the truth, about all of it for a blurred answer, more for grain
    from monai_inr.metrics import high_frequency_error

    assert high_frequency_error(truth, truth, axis=2, mask=mask) == 0.0
    assert 0.7 < high_frequency_error(blurred, truth, axis=2, mask=mask) < 1.1
    assert high_frequency_error(grain, truth, axis=2, mask=mask) > 1.5
