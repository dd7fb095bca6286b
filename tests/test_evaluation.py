"""The evaluation package: one atomic write, one baseline table, one runner, one report writer, bundle fits."""

import json
import os
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_inr.evaluation import (
    BASELINE_ORDERS,
    Column,
    EvaluationRunner,
    InterpolationMethod,
    TableSpec,
    baseline_order,
    interpolate,
    load_reference,
    markdown_table,
    write_montage,
    write_table,
)
from monai_inr.evaluation.multi_contrast_inr import MultiContrastEvaluation
from monai_inr.errors import InputError
from monai_inr.io import write_atomic, write_json_atomic, write_text_atomic
from monai_inr.metrics import evaluate_pair, normalize_to_reference, summarize
from monai_inr.transforms import resize_cell_centred

REPO = Path(__file__).resolve().parents[1]
MC_CONFIGS = REPO / "bundles/multi_contrast_inr/configs"


# ------------------------------------------------------------------------------------------------------ atomic writes


def test_atomic_text_and_json_honour_the_umask_and_leave_no_temporary_files(tmp_path):
    old = os.umask(0o027)
    try:
        path = write_text_atomic(tmp_path / "sub" / "a.md", "x\n")
    finally:
        os.umask(old)
    assert path.read_text(encoding="utf-8") == "x\n" and (path.stat().st_mode & 0o777) == 0o640
    doc = write_json_atomic(tmp_path / "b.json", {"v": float("nan"), "a": np.float32(1.5), "p": tmp_path})
    assert json.loads(doc.read_text(encoding="utf-8")) == {"v": None, "a": 1.5, "p": str(tmp_path)}
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.md", "b.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "c.csv", "old\n")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(path, broken)
    assert path.read_text(encoding="utf-8") == "old\n" and [p.name for p in tmp_path.iterdir()] == ["c.csv"]


def test_concurrent_writers_never_share_a_temporary_name(tmp_path):
    path = tmp_path / "metrics.json"
    texts = [json.dumps({"writer": i, "pad": "x" * 20000}) for i in range(8)]
    errors = []

    def write(t):
        try:
            for _ in range(5):
                write_text_atomic(path, t)
        except Exception as e:  # noqa: BLE001 - any failure is the bug
            errors.append(e)

    threads = [threading.Thread(target=write, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and path.read_text(encoding="utf-8") in texts  # always one complete file
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# ------------------------------------------------------------------------------------------------------ methods


def test_one_baseline_table_drives_every_interpolation():
    assert BASELINE_ORDERS["cubic"] == 3 and BASELINE_ORDERS["trilinear"] == 1 and BASELINE_ORDERS["lr input"] == 0
    assert baseline_order("Trilinear") == 1 and baseline_order("LR input") == 0
    with pytest.raises(InputError, match="unknown interpolation row"):
        baseline_order("bicubic-ish")
    x = np.random.default_rng(0).random((5, 6, 4)).astype(np.float32)
    np.testing.assert_array_equal(interpolate(x, (10, 12, 8), "cubic"), resize_cell_centred(x, (10, 12, 8), order=3))
    assert InterpolationMethod("Cubic").order == 3


def _nifti(path, data, spacing=(2.0, 2.0, 2.0)):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), np.diag([*spacing, 1.0])), str(path))
    return str(path)


@pytest.fixture()
def subject(tmp_path):
    rng = np.random.default_rng(1)
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in (14, 14, 12)], indexing="ij"))
    gt1 = np.clip(1.2 - np.sqrt((g**2).sum(0)), 0, None) * 100
    gt2 = (gt1.max() - gt1) * (gt1 > 0) + 5 * rng.random(gt1.shape)
    item = {
        "subject": "s1",
        "t1w": _nifti(tmp_path / "t1.nii.gz", gt1),
        "t2w": _nifti(tmp_path / "t2.nii.gz", gt2),
        "mask": _nifti(tmp_path / "mask.nii.gz", gt1 > 10),
    }
    return item, gt1.astype(np.float32), gt2.astype(np.float32)


def test_runner_scores_every_method_with_the_protocol_and_draws_error_maps(subject, tmp_path):
    item, gt1, gt2 = subject
    rng = np.random.default_rng(0)
    noisy = (gt1 + rng.normal(0, 5, gt1.shape), gt2 + rng.normal(0, 5, gt2.shape))
    methods = {"oracle": lambda it: (gt1, gt2), "noisy": lambda it: noisy}
    runner = EvaluationRunner([item], methods, lambda it: load_reference(it, ("t1w", "t2w")), ["t1w", "t2w"],
                              figure_dir=tmp_path / "figures")
    recs = runner.run()
    assert [r["method"] for r in recs] == ["oracle", "noisy"]
    mask = gt1 > 10
    p, g = normalize_to_reference(noisy[1], reference=gt2)
    expected = evaluate_pair(p, g, mask=mask)
    assert recs[1]["psnr_t2w"] == pytest.approx(expected["psnr"]) and recs[1]["ssim_mask_t2w"] == pytest.approx(
        expected["ssim_mask"])
    assert recs[1]["psnr_avg"] == pytest.approx((recs[1]["psnr_t1w"] + recs[1]["psnr_t2w"]) / 2)
    assert recs[0]["ssim_t1w"] == pytest.approx(1.0) and recs[0]["psnr_t1w"] > 100
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["s1_t1w.png", "s1_t2w.png"]
    bad = EvaluationRunner([item], {"bad": lambda it: (gt1[:4], gt2)}, lambda it: load_reference(it, ("t1w", "t2w")),
                           ["t1w", "t2w"])
    with pytest.raises(ValueError, match="ground-truth grid"):
        bad.run()


# ------------------------------------------------------------------------------------------------------ report


def test_tables_render_from_data():
    records = [{"subject": f"s{i}", "scale": s, "method": m, "psnr": 30.0 + i + s, "ssim": 0.9}
               for i in range(2) for s in (2.0, 4.0) for m in ("cubic", "net")]
    records[0]["psnr"] = float("nan")
    spec = TableSpec("t", "## T", (Column("PSNR", "psnr", 2), Column("SSIM", "ssim", 3)), ("scale", "method"))
    md = markdown_table(summarize(records, spec.group_by, spec.metric_keys), spec, heading=True).splitlines()
    assert md[0] == "## T" and md[2] == "| scale | Method | n | PSNR | SSIM |"
    assert md[4] == "| 2 | cubic | 2 | 33.00 (n=1) | 0.900 ± 0.000 |"
    pivot = TableSpec("p", "## P", (Column("PSNR", "psnr", 1),), ("method",), pivot="scale")
    rows = summarize(records, ("scale", "method"), ["psnr"])
    assert markdown_table(rows, pivot).splitlines()[:3] == ["| method | ×2 | ×4 | mean |", "|---|---|---|---|",
                                                            "| cubic | 33.0 | 34.5 | 33.8 |"]


def test_an_empty_table_is_written_as_its_header(tmp_path):
    spec = TableSpec("ablation", "## A", (Column("PSNR", "psnr_t1w"),), extra_keys=("seconds",))
    assert write_table([], tmp_path, spec).read_text(encoding="utf-8") == "method,n,psnr_t1w,seconds\n"


def test_montage_with_error_maps_and_intensity_profiles_is_a_png(tmp_path):
    """Slices, error maps and (a third row) each method's profile along the middle row against the reference."""
    import matplotlib.image

    ref = np.linspace(0, 1, 64).reshape(8, 8)
    path = write_montage({"a": ref, "b": ref[::-1]}, tmp_path / "m.png", reference=ref, title="t")
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    flat = write_montage({"a": ref, "b": ref[::-1]}, tmp_path / "flat.png", reference=ref, profile=False)
    tall, short = matplotlib.image.imread(path), matplotlib.image.imread(flat)
    assert tall.shape[0] > 1.4 * short.shape[0] and tall.shape[1] == short.shape[1]  # 3 rows instead of 2


# ------------------------------------------------------------------------------------------------------ bundle fits


def test_multi_contrast_evaluation_refuses_network_settings_its_fits_would_ignore():
    from monai_inr.evaluation.bundle import network_from_bundle

    files = [str(MC_CONFIGS / "train.json"), str(MC_CONFIGS / "quick.json")]
    # the network the evaluation config builds (quick.json's hash grid sized "auto": evaluate.json's stand-in size)
    same = network_from_bundle([str(MC_CONFIGS / f) for f in ("train.json", "evaluate.json", "quick.json")])
    MultiContrastEvaluation([{"subject": "x"}], files, network=same)  # the fits build this network: accepted
    wider = same.variant(trunk_width=32)
    with pytest.raises(InputError, match="eval_fit_overrides"):
        MultiContrastEvaluation([{"subject": "x"}], files, network=wider)
    MultiContrastEvaluation([{"subject": "x"}], files, {"trunk_width": 32}, network=wider)
    with pytest.raises(InputError, match="unknown evaluation method"):
        MultiContrastEvaluation([{"subject": "x"}], files, methods=["bicubic"])
    assert torch.is_tensor(next(same.parameters()))


def test_a_config_level_evaluation_writes_metrics_tables_markdown_and_figures(subject, tmp_path):
    from monai_inr import coords
    from monai_inr.evaluation import Evaluation

    item, gt1, _ = subject
    hr_affine = nib.load(item["t1w"]).affine
    lr_shape = (gt1.shape[0], gt1.shape[1], gt1.shape[2] // 2)
    lr = resize_cell_centred(gt1, lr_shape, order=1)
    item = dict(item, t1w_lr=_nifti(tmp_path / "t1_lr.nii.gz", lr))
    nib.save(nib.Nifti1Image(lr, coords.fov_affine(hr_affine, gt1.shape, lr_shape)), item["t1w_lr"])
    methods = {m: InterpolationMethod(m, ["t1w_lr"], "t1w") for m in ("Cubic", "Trilinear", "LR input")}
    ev = Evaluation([item], methods, ["t1w"], output_dir=tmp_path / "eval", title="# Realistic")
    recs = ev.run()
    assert [r["method"] for r in recs] == ["Cubic", "Trilinear", "LR input"]
    assert recs[1]["psnr_t1w"] > recs[2]["psnr_t1w"]  # trilinear beats the LR voxels as they are
    doc = json.loads((tmp_path / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert doc["metadata"]["tables"]["comparison"]["rows"] == ["Cubic", "Trilinear", "LR input"]
    md = (tmp_path / "eval" / "results.md").read_text(encoding="utf-8")
    assert md.startswith("# Realistic") and "| Cubic | 1 |" in md
    assert (tmp_path / "eval" / "comparison.csv").is_file() and (tmp_path / "eval" / "figures" / "s1_t1w.png").is_file()
    with pytest.raises(InputError, match="callables"):
        Evaluation([item], {"x": "cubic"}, ["t1w"])
