"""Randomised physical acquisition for training: exact LR grids, slice profiles, k-space truncation, SNR, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_inr import coords
from monai_inr.transforms import RandPhysicalAcquisition, WhiteMatterLeveld, resize_cell_centred, white_matter_reference


def smooth_volume(shape=(36, 30, 40), seed=0) -> torch.Tensor:
    """Band-limited test image (a few low-frequency cosines), positive."""
    g = np.random.default_rng(seed)
    grids = np.meshgrid(*[(np.arange(n) + 0.5) / n for n in shape], indexing="ij")
    v = np.full(shape, 2.0)
    for _ in range(4):
        k = g.integers(0, 3, size=3)
        v += 0.3 * np.cos(2 * np.pi * sum(ki * gi for ki, gi in zip(k, grids)) + g.uniform(0, 6))
    return torch.from_numpy(v[None].astype(np.float32))


@pytest.mark.parametrize("scale", [(2.0, 2.0, 2.0), (1.5, 3.0, 2.5), (4.0, 1.5, 1.5)])
def test_exact_lr_grid_and_band_limited_fidelity(scale):
    hr = smooth_volume()
    t = RandPhysicalAcquisition(snr_range=None).set_random_state(0)
    for _ in range(3):
        lr = t(hr, scale=scale)
        shape = coords.scaled_shape(hr.shape[1:], [1 / s for s in scale])
        assert lr.shape == (1, *shape) and lr.dtype == torch.float32
        # a band-limited, smooth image is reproduced at the LR voxel centres (same FOV as the spline resize)
        ref = resize_cell_centred(hr, shape, order=3)
        assert float((lr - ref).abs().mean()) < 0.02 * float(hr.mean()), t.last


def test_multi_slice_averages_along_the_most_downsampled_axis():
    hr = torch.zeros(1, 24, 24, 24)
    hr[:, :, :, 1::2] = 1.0  # stripes along the last axis: a thick slice there averages them
    t = RandPhysicalAcquisition(snr_range=None, prob_3d=0.0, profiles=("box",)).set_random_state(1)
    lr = t(hr, scale=(1.0, 1.0, 2.0))
    assert t.last["slice_axis"] == 2 and lr.shape == (1, 24, 24, 12)
    torch.testing.assert_close(lr, torch.full_like(lr, 0.5), atol=1e-5, rtol=0)


def test_measured_snr_matches_the_request():
    hr = torch.full((1, 48, 48, 48), 1.0)
    t = RandPhysicalAcquisition(snr_range=(20.0, 20.0), prob_3d=1.0).set_random_state(2)
    lr = t(hr, scale=(2.0, 2.0, 2.0), reference=1.0)
    # at SNR 20 the magnitude noise is close to Gaussian with sigma = reference / SNR
    measured = 1.0 / float(lr.std())
    assert abs(measured - 20.0) / 20.0 < 0.1 and t.last["sigma"] == pytest.approx(0.05)
    assert abs(float(lr.mean()) - 1.0) < 0.01


def test_seeded_and_reference_level():
    hr = smooth_volume()
    a = RandPhysicalAcquisition().set_random_state(5)(hr, scale=(2.0, 3.0, 2.0), reference=2.0)
    b = RandPhysicalAcquisition().set_random_state(5)(hr, scale=(2.0, 3.0, 2.0), reference=2.0)
    torch.testing.assert_close(a, b)
    brain = torch.cat([torch.full((600,), 0.5), torch.full((400,), 0.9)])  # GM 60 %, WM 40 %
    assert white_matter_reference(brain[None]) == pytest.approx(0.9)
    d = WhiteMatterLeveld("image")({"image": brain.reshape(1, 10, 10, 10)})
    assert float(d["wm_level"]) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="snr_range"):
        RandPhysicalAcquisition(snr_range=(0.0, 5.0))
    with pytest.raises(ValueError, match="profiles"):
        RandPhysicalAcquisition(profiles=("triangle",))
