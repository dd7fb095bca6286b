import csv
import json
import math
import os

import numpy as np
import pytest
import torch
from scipy import ndimage

from monai_inr.metrics import (
    evaluate_pair,
    normalize_to_reference,
    psnr,
    reference_intensity_map,
    slicewise,
    ssim,
    summarize,
    write_metrics,
)


def volume(shape=(20, 22, 24), seed=0):
    rng = np.random.default_rng(seed)
    gt = 10 + 100 * ndimage.gaussian_filter(rng.random(shape), 2.0)  # raw intensities, not in [0, 1]
    mask = np.zeros(shape, bool)
    mask[3:17, 4:18, 5:20] = True
    return gt, mask


# --------------------------------------------------------------------------------------------------- normalisation


def test_normalisation_uses_reference_range_only():
    gt, _ = volume()
    lo, hi = gt.min(), gt.max()
    pred = 2.0 * gt - 30.0  # biased prediction with a different range
    orig = pred.copy()
    pred_n, gt_n = normalize_to_reference(pred, reference=gt)
    np.testing.assert_allclose(gt_n, (gt - lo) / (hi - lo), atol=1e-12)
    np.testing.assert_allclose(pred_n, np.clip((pred - lo) / (hi - lo), 0, 1), atol=1e-12)
    assert gt_n.min() == 0.0 and gt_n.max() == 1.0
    # not renormalised by its own range: the bias stays visible
    assert not np.allclose(pred_n, (pred - pred.min()) / (pred.max() - pred.min()))
    np.testing.assert_array_equal(pred, orig)  # inputs never modified
    # several images, order kept, torch accepted, float32 stays float32
    a_n, b_n, g_n = normalize_to_reference(torch.from_numpy(gt), gt.astype(np.float32), reference=gt)
    np.testing.assert_allclose(a_n, gt_n)
    assert b_n.dtype == np.float32 and g_n.dtype == np.float64


def test_normalisation_percentile_and_mask():
    gt, mask = volume()
    lo, hi = np.percentile(gt, [0.5, 99.5])
    assert reference_intensity_map(gt, mode="percentile") == pytest.approx((lo, hi))
    pred_n, gt_n = normalize_to_reference(gt + 5, reference=gt, mode="percentile")
    assert gt_n.min() == 0.0 and gt_n.max() == 1.0  # reference clipped too (tails saturate)
    np.testing.assert_allclose(pred_n, np.clip((gt + 5 - lo) / (hi - lo), 0, 1), atol=1e-12)
    assert reference_intensity_map(gt, mask=mask) == (gt[mask].min(), gt[mask].max())
    assert reference_intensity_map(gt, mask=mask, mode="percentile", percentiles=(1, 99)) == pytest.approx(
        tuple(np.percentile(gt[mask], [1, 99]))
    )


def test_normalisation_errors():
    gt, _ = volume()
    with pytest.raises(ValueError, match="constant"):
        normalize_to_reference(gt, reference=np.ones_like(gt))
    with pytest.raises(ValueError, match="shape"):
        normalize_to_reference(gt[1:], reference=gt)
    with pytest.raises(ValueError, match="mode"):
        normalize_to_reference(gt, reference=gt, mode="zscore")
    with pytest.raises(ValueError, match="percentiles"):
        normalize_to_reference(gt, reference=gt, mode="percentile", percentiles=(99, 1))
    bad = gt.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        normalize_to_reference(gt, reference=bad)


# --------------------------------------------------------------------------------------------------- evaluate_pair


def test_evaluate_pair_values():
    gt, mask = volume()
    pred = gt + ndimage.gaussian_filter(np.random.default_rng(1).standard_normal(gt.shape), 1.0) * 3
    pred_n, gt_n = normalize_to_reference(pred, reference=gt)
    r = evaluate_pair(pred_n, gt_n, mask=mask)
    assert list(r) == ["psnr", "psnr_mask", "ssim", "ssim_mask"]
    assert all(type(v) is float for v in r.values())
    assert r["psnr"] == psnr(pred_n, gt_n, data_range=1.0)
    assert r["psnr_mask"] == psnr(pred_n, gt_n, data_range=1.0, mask=mask)
    assert r["ssim"] == ssim(pred_n, gt_n, data_range=1.0)
    assert r["ssim_mask"] == ssim(pred_n, gt_n, data_range=1.0, mask=mask)
    # normalize= shortcut equals the explicit two-step protocol
    assert evaluate_pair(pred, gt, mask=mask, normalize="minmax") == r
    # without a mask the in-mask entries are NaN
    r2 = evaluate_pair(pred_n, gt_n)
    assert math.isnan(r2["psnr_mask"]) and math.isnan(r2["ssim_mask"]) and r2["psnr"] == r["psnr"]
    # identical images
    r3 = evaluate_pair(gt_n, gt_n, mask=mask)
    assert r3["psnr"] == math.inf and r3["ssim"] == pytest.approx(1.0) and r3["ssim_mask"] == pytest.approx(1.0)


def test_evaluate_pair_nan_safe():
    gt, mask = volume()
    (gt_n,) = normalize_to_reference(reference=gt)
    r = evaluate_pair(np.zeros_like(gt_n), gt_n, mask=mask)  # constant prediction
    assert all(math.isfinite(v) for v in r.values())
    r = evaluate_pair(np.full_like(gt_n, 0.5), gt_n, mask=mask)
    assert all(math.isfinite(v) for v in r.values())
    bad = gt_n.copy()
    bad[3, 3, 3] = np.nan
    with pytest.warns(UserWarning, match="NaN"):
        r = evaluate_pair(bad, gt_n, mask=mask)
    assert all(math.isnan(v) for v in r.values())
    with pytest.warns(UserWarning, match="outside"):
        evaluate_pair(gt_n + 0.5, gt_n)
    with pytest.raises(ValueError, match="spans"):
        evaluate_pair(gt, gt)  # unnormalised target with data_range 1
    with pytest.raises(ValueError, match="no voxels"):
        evaluate_pair(gt_n, gt_n, mask=np.zeros(gt.shape))
    with pytest.raises(ValueError, match="same shape"):
        evaluate_pair(gt_n[1:], gt_n)


def test_evaluate_pair_slicewise():
    gt, mask = volume(shape=(16, 18, 20))
    mask = np.zeros(gt.shape, bool)
    mask[2:14, 3:15, 4:16] = True
    pred_n, gt_n = normalize_to_reference(gt + 4 * np.sin(gt), reference=gt)
    r = evaluate_pair(pred_n, gt_n, mask=mask, slice_axes=(2,))
    assert set(r) == {"psnr", "psnr_mask", "ssim", "ssim_mask", "psnr_slice", "psnr_slice_mask", "ssim_slice",
                      "ssim_slice_mask"}
    assert r["ssim_slice_mask"] == pytest.approx(
        slicewise(ssim, pred_n, gt_n, axes=(2,), mask=mask, masked=True, data_range=1.0)
    )
    assert r["psnr_slice"] == pytest.approx(slicewise(psnr, pred_n, gt_n, axes=(2,), mask=mask, data_range=1.0))


# --------------------------------------------------------------------------------------------------- summaries


def records():
    rs = []
    for scale in (2, 2.5):
        for method, base in (("cubic", 30.0), ("arssr", 33.0)):
            for s in range(3):
                rs.append({"subject": f"s{s}", "seed": 0, "scale": scale, "method": method,
                           "psnr": base - scale + s, "ssim": 0.9 + 0.01 * s, "psnr_mask": np.float64(base - 2 + s)})
    rs[0]["ssim"] = float("nan")  # one missing value
    return rs


def test_summarize():
    rows = summarize(records())
    assert [(r["scale"], r["method"]) for r in rows] == [(2, "cubic"), (2, "arssr"), (2.5, "cubic"), (2.5, "arssr")]
    r = rows[1]
    assert r["n"] == 3 and r["psnr_n"] == 3
    assert r["psnr_mean"] == pytest.approx(33.0 - 2 + 1) and r["psnr_sd"] == pytest.approx(1.0)  # sample SD
    assert rows[0]["ssim_n"] == 2 and rows[0]["ssim_mean"] == pytest.approx(0.915)
    assert "seed_mean" not in r and "subject_mean" not in r  # ints and strings are not metrics
    one = summarize(records()[:1])
    assert math.isnan(one[0]["psnr_sd"]) and one[0]["n"] == 1
    by_method = summarize(records(), group_by=("method",), metric_keys=["psnr"])
    assert [r["method"] for r in by_method] == ["cubic", "arssr"] and by_method[0]["n"] == 6
    with pytest.raises(ValueError, match="lacks the group key"):
        summarize([{"method": "a", "psnr": 1.0}])


def test_write_metrics(tmp_path):
    out = tmp_path / "eval"
    paths = write_metrics(records(), out, metadata={"normalization": "minmax", "degradation": "box"})
    assert paths["json"] == out / "metrics.json"
    doc = json.loads((out / "metrics.json").read_text(encoding="utf-8"), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert len(doc["records"]) == 12 and len(doc["summary"]) == 4
    assert doc["records"][0]["ssim"] is None  # NaN -> null
    assert doc["metric_keys"] == ["psnr", "ssim", "psnr_mask"]
    assert doc["metadata"]["degradation"] == "box" and doc["protocol"]["data_range"] == 1.0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "metrics_scale-2.5.csv", "metrics_scale-2.csv"]
    assert set(paths["csv"]) == {2, 2.5}
    with open(out / "metrics_scale-2.5.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["method", "n", "psnr", "ssim", "psnr_mask"]
    assert [r[0] for r in rows[1:]] == ["cubic", "arssr"]
    assert rows[2][1] == "3" and rows[2][2] == "31.5000 ± 1.0000"
    with open(out / "metrics_scale-2.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[1][3] == "0.9150 ± 0.0071 (n=2)"
    # a custom prefix and a single table without scales; no temporary files left behind
    p2 = write_metrics(records(), out, prefix="ablation", group_by=("method",), decimals=2)
    assert p2["csv"][None].name == "ablation.csv"
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]
    with pytest.raises(ValueError, match="no records"):
        write_metrics([], out)
