"""The MI errors of McGinnis, Shit et al. and the flattened two-contrast evaluation record."""

import numpy as np
import pytest

from monai_inr.metrics import mutual_information
from monai_inr.metrics.multi_contrast import evaluate_contrast_pair, mi_errors


def _pair(shape=(20, 22, 18), seed=0):
    rng = np.random.default_rng(seed)
    tissue = rng.integers(0, 4, shape)
    g1 = np.choose(tissue, [0.0, 0.3, 0.6, 0.9]) + 0.02 * rng.standard_normal(shape)
    g2 = np.choose(tissue, [0.0, 0.8, 0.5, 0.2]) + 0.02 * rng.standard_normal(shape)
    mask = tissue > 0
    return g1, g2, mask


def test_perfect_predictions_have_zero_error():
    g1, g2, mask = _pair()
    e = mi_errors(g1, g2, g1, g2, mask)
    assert e["eps_mi_c1"] == e["eps_mi_c2"] == e["eps_mi_joint"] == 0.0
    assert e["mi_gt"] == pytest.approx(mutual_information(g1, g2, bins=32, mask=mask))


def test_errors_follow_the_definitions():
    g1, g2, mask = _pair()
    rng = np.random.default_rng(1)
    p1 = g1 + 0.2 * rng.standard_normal(g1.shape)
    p2 = np.roll(g2, 2, axis=0)
    e = mi_errors(p1, p2, g1, g2, mask)
    mi = lambda a, b: mutual_information(a, b, bins=32, mask=mask)  # noqa: E731
    assert e["eps_mi_c1"] == pytest.approx(abs(mi(p1, g2) - mi(g1, g2)))
    assert e["eps_mi_c2"] == pytest.approx(abs(mi(g1, p2) - mi(g1, g2)))
    assert e["eps_mi_joint"] == pytest.approx(abs(mi(p1, p2) - mi(g1, g2)))
    assert e["eps_mi_c1"] > 0.05 and e["eps_mi_c2"] > 0.05


def test_evaluate_contrast_pair_record():
    g1, g2, mask = _pair()
    scale1, scale2 = 1000.0, 3.0  # predictions in the ground truths' own units
    rec = evaluate_contrast_pair(g1 * scale1, g2 * scale2 + 0.01, g1 * scale1, g2 * scale2, mask, names=("t1w", "t2w"))
    for key in ("psnr_t1w", "psnr_mask_t1w", "ssim_t1w", "ssim_mask_t1w", "psnr_t2w", "psnr_mask_t2w", "ssim_t2w",
                "ssim_mask_t2w", "eps_mi_t1w", "eps_mi_t2w", "eps_mi_joint", "mi_gt", "mi_pred"):
        assert key in rec
        assert np.isfinite(rec[key]) or key in ("psnr_t1w", "psnr_mask_t1w"), key
    assert rec["psnr_t1w"] > 100 and rec["ssim_t1w"] == pytest.approx(1.0)
    assert 30 < rec["psnr_t2w"] < 60
    with pytest.raises(ValueError):
        evaluate_contrast_pair(g1, g2, g1, g2, mask, names=("a",))
