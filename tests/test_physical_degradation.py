"""Physical degradations: slice profile with gap, Rician noise at a white-matter SNR, the physical acquisition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage as ndi

from monai_inr.transforms import (
    DEGRADATION_SCALE_KEY,
    NOISE_REFERENCE_KEY,
    NOISE_SIGMA_KEY,
    SNR_KEY,
    CubicDownsample,
    PhysicalAcquisition,
    PhysicalAcquisitiond,
    RandRicianNoiseSNR,
    RandRicianNoiseSNRd,
    ThickSliceAcquisition,
    white_matter_reference,
)


def _brain(shape=(40, 44, 36), seed=0):
    """A smooth non-negative 'brain': WM ball (label 3, level 1.0) in GM (label 2, 0.7) in CSF (label 1, 0.2)."""
    rng = np.random.default_rng(seed)
    idx = np.indices(shape).astype(np.float32)
    c = (np.asarray(shape, np.float32) - 1)[:, None, None, None] / 2
    r = np.sqrt((((idx - c) / (np.asarray(shape)[:, None, None, None] / 2)) ** 2).sum(0))
    lab = np.zeros(shape, np.uint8)
    lab[r < 0.9] = 1
    lab[r < 0.8] = 2
    lab[r < 0.68] = 3  # WM about 40 % of the brain, as in a real one
    img = np.choose(lab, [0.0, 0.2, 0.7, 1.0]).astype(np.float32)
    img = np.abs(ndi.gaussian_filter(img, 0.7) + 0.02 * ndi.gaussian_filter(rng.standard_normal(shape), 1.5))
    affine = np.array([[0.0, 0.0, 1.2, -20.0], [-1.0, 0.0, 0.0, 30.0], [0.0, 1.1, 0.0, -15.0], [0, 0, 0, 1]])
    return MetaTensor(torch.from_numpy(img.astype(np.float32))[None], affine=torch.as_tensor(affine)), lab


def _centre(shape, affine):
    a = np.asarray(affine, dtype=np.float64)
    return a[:3, :3] @ ((np.asarray(shape) - 1) / 2.0) + a[:3, 3]


@pytest.mark.parametrize("kw", [{}, {"slice_axis": 1, "profile": "gaussian"}, {"slice_axis": 2, "slice_gap": 0.25},
                                {"random_phase": True}])
@pytest.mark.parametrize("scale", [2.0, (1.0, 1.5, 3.0)])
def test_physical_geometry(kw, scale):
    x, _ = _brain()
    y = PhysicalAcquisition(scale=scale, snr=None, **kw)(x)
    shape, affine = CubicDownsample(scale).output_geometry(x.shape[1:], x.affine)
    assert tuple(y.shape[1:]) == shape and y.dtype == torch.float32
    np.testing.assert_allclose(y.affine.numpy(), affine)
    # physical FOV centre kept, spacing = N_hr / N_lr times the HR spacing
    np.testing.assert_allclose(_centre(shape, y.affine.numpy()), _centre(x.shape[1:], x.affine.numpy()), atol=1e-9)
    f = np.asarray(x.shape[1:]) / np.asarray(shape)
    np.testing.assert_allclose(y.meta[DEGRADATION_SCALE_KEY], f)
    assert y.meta[NOISE_SIGMA_KEY] == 0.0 and math.isinf(y.meta[SNR_KEY])


@pytest.mark.parametrize("kw", [{}, {"slice_axis": 0, "profile": "box"}, {"slice_axis": 2, "profile": "gaussian"}])
@pytest.mark.parametrize("snr", [10.0, 20.0, 40.0])
def test_measured_snr_within_10_percent(kw, snr):
    x, lab = _brain((64, 64, 48))
    t = PhysicalAcquisition(scale=2.0, snr=snr, **kw).set_random_state(3)
    y = t(x, label=lab)
    clean = PhysicalAcquisition(scale=2.0, snr=None, **kw)(x)
    ref = white_matter_reference(x, label=lab)
    assert t.last["reference"] == pytest.approx(ref) and y.meta[NOISE_REFERENCE_KEY] == pytest.approx(ref)
    assert y.meta[NOISE_SIGMA_KEY] == pytest.approx(ref / snr) and y.meta[SNR_KEY] == snr
    lr_lab = CubicDownsample(2.0, order=0)(torch.from_numpy(lab[None].astype(np.float32)))[0].numpy()
    wm = ndi.binary_erosion(lr_lab == 3, iterations=1)
    noise = (y - clean)[0].numpy()[wm]
    measured = float(clean[0].numpy()[wm].mean() / noise.std())
    assert measured == pytest.approx(snr, rel=0.10)


def test_rician_noise_snr_in_range_and_measured():
    x, lab = _brain((64, 64, 48))
    t = RandRicianNoiseSNR((10.0, 40.0)).set_random_state(0)
    snrs = []
    for _ in range(6):
        y = t(x, label=lab)
        snr = y.meta[SNR_KEY]
        snrs.append(snr)
        assert 10.0 <= snr <= 40.0
        wm = ndi.binary_erosion(lab == 3, iterations=1)
        measured = float(x[0].numpy()[wm].mean() / (y - x)[0].numpy()[wm].std())
        assert measured == pytest.approx(snr, rel=0.10)
        assert y.meta[NOISE_SIGMA_KEY] == pytest.approx(white_matter_reference(x, label=lab) / snr)
    assert len(set(snrs)) == 6
    # background: Rician mean sigma sqrt(pi / 2)
    y = RandRicianNoiseSNR(20.0)(x, label=lab)
    bg = ndi.binary_erosion(lab == 0, iterations=3)
    assert float(y[0].numpy()[bg].mean()) == pytest.approx(y.meta[NOISE_SIGMA_KEY] * math.sqrt(math.pi / 2), rel=0.05)


def test_deterministic_per_seed_and_input_untouched():
    x, lab = _brain()
    before = x.clone()
    kw = dict(scale=(2.0, 2.0, 1.0), snr=(10.0, 40.0), random_phase=0.5, slice_axis=0)
    a = PhysicalAcquisition(**kw).set_random_state(7)(x, label=lab)
    b = PhysicalAcquisition(**kw).set_random_state(7)(x, label=lab)
    c = PhysicalAcquisition(**kw).set_random_state(8)(x, label=lab)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    torch.testing.assert_close(x, before)


def test_noise_free_constant_and_phase_magnitude():
    # a constant image stays constant through slice profile + k-space truncation (amplitude correction)
    const = torch.full((1, 24, 20, 16), 0.6)
    y = PhysicalAcquisition(scale=(2.0, 4.0, 2.0), slice_axis=1, profile="gaussian", snr=None)(const)
    torch.testing.assert_close(y, torch.full_like(y, 0.6), atol=1e-5, rtol=0)
    # a random phase does not change the magnitude when nothing is truncated
    x, _ = _brain()
    y = PhysicalAcquisition(scale=1.0, snr=None, random_phase=True).set_random_state(1)(x)
    torch.testing.assert_close(y.as_tensor(), x.as_tensor(), atol=1e-5, rtol=1e-5)


def test_box_slice_profile_is_the_slab_mean_and_gap():
    x, _ = _brain((16, 16, 32))
    data = x[0].numpy()
    y = PhysicalAcquisition(scale=(1.0, 1.0, 4.0), slice_axis=2, profile="box", snr=None)(x)[0].numpy()
    np.testing.assert_allclose(y, data.reshape(16, 16, 8, 4).mean(-1), atol=1e-5)
    # gap 0.5: each 4-voxel slice spacing integrates only its central 2 voxels
    y = PhysicalAcquisition(scale=(1.0, 1.0, 4.0), slice_axis=2, profile="box", slice_gap=0.5, snr=None)(x)[0].numpy()
    np.testing.assert_allclose(y, data.reshape(16, 16, 8, 4)[..., 1:3].mean(-1), atol=1e-5)
    t = ThickSliceAcquisition(axis=2, factor=4, profile="box", gap=0.5)(x)[0].numpy()
    np.testing.assert_allclose(t, y, atol=1e-5)
    with pytest.raises(ValueError, match="gap"):
        ThickSliceAcquisition(axis=2, factor=4, gap=1.0)
    with pytest.raises(ValueError, match="either thickness or gap"):
        ThickSliceAcquisition(axis=2, factor=4, thickness=2.0, gap=0.2)


def test_arrays_and_per_axis_scale_as_in_a_training_sampler():
    x, lab = _brain()
    arr = x[0].numpy()[None]
    t = PhysicalAcquisition(snr=(10.0, 40.0), slice_axis=0).set_random_state(0)
    y = t(arr, scale=(3.0, 1.5, 1.5), reference=0.9)
    assert tuple(y.shape) == (1, round(40 / 3), round(44 / 1.5), round(36 / 1.5))
    assert t.last["reference"] == 0.9 and 10 <= t.last["snr"] <= 40
    y2 = t(torch.from_numpy(arr), scale=2)
    assert tuple(y2.shape) == (1, 20, 22, 18)
    with pytest.raises(ValueError, match="no scale"):
        PhysicalAcquisition()(arr)


def test_dictionary_variants_record_noise():
    x, lab = _brain()
    d = {"t1w": x, "t2w": x * 0.5, "label": lab[None], "scale": torch.tensor([2.0, 2.0, 1.0])}
    out = PhysicalAcquisitiond(["t1w", "t2w"], scale_key="scale", snr=(10, 40), label_key="label",
                               slice_axis=2).set_random_state(0)(d)
    assert tuple(out["t1w"].shape[1:]) == (20, 22, 36) and out["label"] is d["label"]
    assert float(out["t1w_snr"]) == pytest.approx(float(out["t2w_snr"]))  # one draw per item
    assert float(out["t2w_noise_reference"]) == pytest.approx(0.5 * float(out["t1w_noise_reference"]), rel=1e-5)
    assert float(out["t1w_noise_sigma"]) == pytest.approx(float(out["t1w_noise_reference"]) / float(out["t1w_snr"]))
    assert not torch.allclose(out["t1w"] * 0.5, out["t2w"])  # independent noise
    out = RandRicianNoiseSNRd(["t1w"], snr_range=25.0, mask_key="mask").set_random_state(0)(
        {"t1w": x, "mask": (lab > 0)[None]})
    assert float(out["t1w_snr"]) == 25.0 and out["t1w"].shape == x.shape
    assert float(out["t1w_noise_reference"]) == pytest.approx(white_matter_reference(x, mask=lab > 0))


def test_white_matter_reference():
    x, lab = _brain()
    wm = float(x[0].numpy()[lab == 3].mean())
    assert white_matter_reference(x, label=lab) == pytest.approx(wm, rel=1e-5)
    assert white_matter_reference(x, label=lab[None]) == pytest.approx(wm, rel=1e-5)
    assert white_matter_reference(x, mask=lab > 0) == pytest.approx(wm, rel=0.1)  # robust percentile estimate
    with pytest.raises(ValueError, match="no white matter"):
        white_matter_reference(x, label=np.zeros_like(lab))
    with pytest.raises(ValueError, match="shape"):
        white_matter_reference(x, label=lab[:5])
