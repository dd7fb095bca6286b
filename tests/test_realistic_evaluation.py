"""The realistic evaluation set (monai_inr.evaluation.realistic) and the ArSSR realistic evaluation overlay."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from monai_inr import coords
from monai_inr.errors import InputError
from monai_inr.evaluation.realistic import (GROUP_KEYS, baseline_methods, build_degraded_inputs, degrade,
                                            parse_degradation, run_realistic_evaluation)
from monai_inr.io import load_volume, save_nifti

REPO = Path(__file__).resolve().parents[1]
SHAPE = (24, 28, 20)


def _subject(out: Path, i: int, shape=SHAPE) -> dict[str, str]:
    rng = np.random.RandomState(i)
    lab = np.zeros(shape, np.uint8)
    lab[2:-2, 2:-2, 2:-2] = 1
    lab[5:-5, 5:-5, 4:-4] = 3
    lab[8:12, 8:16, 6:12] = 2
    t1 = np.choose(lab, [0.0, 0.2, 0.6, 1.0]).astype(np.float32)
    t1 += 0.1 * gaussian_filter(rng.rand(*shape), 1.0).astype(np.float32)
    t2 = np.choose(lab, [0.0, 1.0, 0.7, 0.4]).astype(np.float32)
    pd = np.choose(lab, [0.0, 1.0, 0.8, 0.65]).astype(np.float32)
    na = np.choose(lab, [0.0, 140.0, 40.0, 30.0]).astype(np.float32)
    aff = np.array([[0.0, 0.0, 1.5, -10.0], [1.2, 0.0, 0.0, 5.0], [0.0, 1.0, 0.0, 3.0], [0, 0, 0, 1.0]])
    sid = f"sub-{i:04d}"
    return {"image": str(save_nifti(t1, aff, out / f"{sid}_T1w.nii.gz")),
            "t1w": str(out / f"{sid}_T1w.nii.gz"),
            "t2w": str(save_nifti(t2, aff, out / f"{sid}_T2w.nii.gz")),
            "pd": str(save_nifti(pd, aff, out / f"{sid}_PDw.nii.gz")),
            "sodium": str(save_nifti(na, aff, out / f"{sid}_acq-23Na_TSC.nii.gz")),
            "label": str(save_nifti(lab, aff, out / f"{sid}_dseg.nii.gz", dtype=np.uint8)),
            "mask": str(save_nifti(lab > 0, aff, out / f"{sid}_mask.nii.gz", dtype=np.uint8)),
            "subject": sid}


@pytest.fixture(scope="module")
def datalist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("realistic_eval_data")
    items = [_subject(out, i) for i in range(3)]
    real = {k: v for k, v in items[2].items() if k not in ("t2w", "pd", "sodium")}  # the real scan: a T1w only
    real["subject"] = "real-0000"
    path = out / "datalist.json"
    path.write_text(json.dumps({"training": items[:1], "test": items[1:2], "real": [real]}))
    return path


def _centre(affine: np.ndarray, shape) -> np.ndarray:
    return affine[:3, :3] @ ((np.asarray(shape) - 1) / 2.0) + affine[:3, 3]


@pytest.mark.parametrize("name,slice_axis", [("cubic", 2), ("kspace_snr20", 2), ("thick_box", 1),
                                             ("thick_gaussian_snr10", 0), ("kspace2d", 2)])
def test_lr_geometry(datalist, tmp_path, name, slice_axis):
    items = build_degraded_inputs(datalist, tmp_path, scales=(2.0, 3.0), degradations=(name,), splits=("test",),
                                  contrasts=("t1w", "t2w"), slice_axes={"t1w": slice_axis, "t2w": slice_axis})
    assert len(items) == 2
    deg = parse_degradation(name)
    for it in items:
        hr, hr_aff = load_volume(it["t1w"])
        for c in ("t1w", "t2w"):
            lr, lr_aff = load_volume(it[f"{c}_lr"])
            f = deg.factors(it["scale"], 3, slice_axis)
            expected = coords.scaled_shape(hr.shape, [1.0 / v for v in f])
            assert lr.shape == tuple(expected)
            # same field of view: same physical centre, spacing = HR spacing * N / M per axis
            np.testing.assert_allclose(_centre(lr_aff, lr.shape), _centre(hr_aff, hr.shape), atol=1e-4)
            ratio = coords.spacing_from_affine(lr_aff) / coords.spacing_from_affine(hr_aff)
            np.testing.assert_allclose(ratio, np.asarray(hr.shape) / np.asarray(lr.shape), rtol=1e-5)
            # directions kept
            np.testing.assert_allclose(lr_aff[:3, :3] / coords.spacing_from_affine(lr_aff),
                                       hr_aff[:3, :3] / coords.spacing_from_affine(hr_aff), atol=1e-6)


@pytest.mark.parametrize("snr", [10.0, 20.0, 40.0])
def test_measured_snr(snr):
    shape = (48, 48, 40)
    lab = np.zeros(shape, np.uint8)
    lab[4:-4, 4:-4, 4:-4] = 3
    img = np.where(lab == 3, 1.0, 0.1).astype(np.float32)
    aff = np.eye(4)
    for name in (f"kspace_snr{snr:g}", f"thick_gaussian_snr{snr:g}", f"cubic_snr{snr:g}"):
        clean, _, _ = degrade(img, aff, name.split("_snr")[0], 2.0, slice_axis=2)
        noisy, _, info = degrade(img, aff, name, 2.0, slice_axis=2, label=lab, seed=3)
        assert info["snr"] == snr and info["reference"] == pytest.approx(1.0, rel=1e-4)
        wm = clean > 0.98  # the white-matter interior of the LR grid, away from ringing
        measured = float(clean[wm].mean() / (noisy[wm] - clean[wm]).std())
        assert measured == pytest.approx(snr, rel=0.1), (name, measured)


def test_deterministic_cached_and_grouped(datalist, tmp_path):
    kw = dict(scales=(2.0,), degradations=("kspace_snr20", "cubic"), splits=("test", "real"), contrasts=("t1w",))
    a = build_degraded_inputs(datalist, tmp_path / "a", **kw)
    b = build_degraded_inputs(datalist, tmp_path / "b", **kw)
    assert [it["case"] for it in a] == ["sub-0001_kspace_snr20_x2", "sub-0001_cubic_x2", "real-0000_kspace_snr20_x2",
                                        "real-0000_cubic_x2"]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(load_volume(x["t1w_lr"])[0], load_volume(y["t1w_lr"])[0])
        assert {k: x[k] for k in ("split", "scale", "degradation", "snr")} == \
               {k: y[k] for k in ("split", "scale", "degradation", "snr")}
    assert [(it["split"], it["degradation"], it["snr"]) for it in a] == [
        ("test", "kspace_snr20", 20.0), ("test", "cubic", None),
        ("real", "kspace_snr20", 20.0), ("real", "cubic", None)]
    # a rerun skips current files; a changed source is rewritten
    stamp = Path(a[0]["t1w_lr"]).stat().st_mtime_ns
    build_degraded_inputs(datalist, tmp_path / "a", **kw)
    assert Path(a[0]["t1w_lr"]).stat().st_mtime_ns == stamp
    src = Path(a[0]["t1w"])
    os.utime(src, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns + 1_000_000_000))
    build_degraded_inputs(datalist, tmp_path / "a", **kw)
    assert Path(a[0]["t1w_lr"]).stat().st_mtime_ns != stamp
    # different subjects and scales get different noise
    c = build_degraded_inputs(datalist, tmp_path / "c", **{**kw, "seed": 1})
    assert not np.array_equal(load_volume(a[0]["t1w_lr"])[0], load_volume(c[0]["t1w_lr"])[0])
    # the real split has no T2w: skipped for a T2w evaluation
    t2 = build_degraded_inputs(datalist, tmp_path / "d", **{**kw, "contrasts": ("t1w", "t2w")})
    assert {it["split"] for it in t2} == {"test"}
    with pytest.raises(InputError, match="unknown degradation"):
        build_degraded_inputs(datalist, tmp_path / "e", **{**kw, "degradations": ("blur",)})

    records = run_realistic_evaluation(a, baseline_methods(("t1w",)), tmp_path / "report", figures=False)
    assert len(records) == 8 and all(all(k in r for k in GROUP_KEYS) for r in records)
    doc = json.loads((tmp_path / "report" / "metrics.json").read_text(encoding="utf-8"))
    assert tuple(doc["group_by"]) == GROUP_KEYS
    assert {(s["split"], s["degradation"], s["method"]) for s in doc["summary"]} == {
        (sp, d, m) for sp in ("test", "real") for d in ("kspace_snr20", "cubic") for m in ("Cubic", "Trilinear")}


def test_arssr_overlay_end_to_end(datalist, tmp_path):
    """``run evaluating`` of train.json + evaluate_realistic.json with a tiny untrained ArSSR whose checkpoint carries
    its network definition (the configured network_def is the paper's: the checkpoint's must win)."""
    from monai.bundle import ConfigWorkflow

    from monai_inr.engines.checks import save_network_checkpoint
    from monai_inr.networks.nets import ArSSR

    torch.manual_seed(0)
    net = ArSSR(encoder="RDN", feature_channels=8, decoder_hidden=8,
                encoder_kwargs={"features": 4, "growth": 4, "num_blocks": 1, "num_layers": 1})
    ckpt = save_network_checkpoint(net, None, tmp_path / "model.pt")
    configs = REPO / "bundles" / "arssr" / "configs"
    wf = ConfigWorkflow(config_file=[str(configs / "train.json"), str(configs / "evaluate_realistic.json")],
                        workflow_type="eval", run_id="evaluating", logging_file=False,
                        bundle_root=str(tmp_path / "bundle"), realistic_datalist=str(datalist), ckpt_path=str(ckpt),
                        device="cpu", eval_realistic_scales=[2.0, 3.0], chunk_size=4096)
    wf.initialize()
    wf.run()
    wf.finalize()
    out = tmp_path / "bundle" / "eval" / "realistic"
    doc = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    rows = {(s["split"], s["degradation"], s["scale"], s["method"]) for s in doc["summary"]}
    assert rows == {(sp, d, sc, m) for sp in ("test", "real") for d in ("cubic", "kspace_snr20") for sc in (2.0, 3.0)
                    for m in ("Cubic", "Trilinear", "ArSSR")}
    assert all(np.isfinite(s["psnr_mask_t1w_mean"]) for s in doc["summary"])
    table = (out / "realistic.md").read_text(encoding="utf-8")
    assert "PSNR in the brain" in table and "| test | kspace_snr20 | ArSSR |" in table
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert "sub-0001_kspace_snr20_x3_t1w.png" in figures and len(figures) == 8
    assert (out / "inputs" / "real" / "real-0000_t1w_cubic_x2.nii.gz").is_file()


@pytest.mark.parametrize("bundle,row", [("multi_contrast_inr", "MC-INR"), ("nexus_inr", "Nexus-INR")])
def test_multi_contrast_overlays_parse(datalist, tmp_path, bundle, row):
    """The anisotropic overlays build thick-slice T1w (axial) and T2w (coronal) inputs of the realistic test split."""
    from monai.bundle import ConfigParser

    configs = REPO / "bundles" / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "evaluate_realistic.json")])
    parser["bundle_root"] = str(tmp_path)
    parser["realistic_datalist"] = str(datalist)
    items = parser.get_parsed_content("eval_realistic_items")
    scales = parser.get_parsed_content("eval_realistic_scales")
    degs = parser.get_parsed_content("eval_realistic_degradations")
    assert len(items) == len(scales) * len(degs) and {it["split"] for it in items} == {"test"}
    hr_shape = load_volume(items[0]["t1w"])[0].shape
    it = items[-1]
    t1, t2 = load_volume(it["t1w_lr"])[0].shape, load_volume(it["t2w_lr"])[0].shape
    assert t1[:2] == hr_shape[:2] and t1[2] < hr_shape[2]  # axial thick slices
    assert t2[0] == hr_shape[0] and t2[2] == hr_shape[2] and t2[1] < hr_shape[1]  # coronal thick slices
    target = parser["eval_realistic_method"]["_target_"]
    assert target.endswith({"MC-INR": "MultiContrastINRMethod", "Nexus-INR": "NexusINRMethod"}[row])


def test_dual_arbnet_overlay_noise(datalist, tmp_path):
    """Dual-ArbNet's realistic overlay: its own k-space truncated slices of realistic T2w / PD, plus Rician noise at
    the white-matter SNR of each contrast (measured on the HR volume), deterministic."""
    from monai.bundle import ConfigParser

    configs = REPO / "bundles" / "dual_arbnet" / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / n) for n in ("train.json", "evaluate.json", "evaluate_realistic.json")])
    parser["bundle_root"] = str(tmp_path)
    parser["realistic_datalist"] = str(datalist)
    parser["crop_multiple"] = 4
    files = parser.get_parsed_content("test_files")
    # white matter of the T2w is 0.4 on a [0, 1] volume, of the PD 0.65
    assert len(files) == 1 and files[0]["image_wm"] == pytest.approx(0.4, abs=1e-4)
    assert files[0]["reference_wm"] == pytest.approx(0.65, abs=1e-4)
    for snr in (None, 20.0):
        parser["eval_realistic_snr"] = snr if snr is not None else 1e9
        parser.parse()
        pre = parser.get_parsed_content("evaluate::preprocessing", lazy=False)
        pre.set_random_state(seed=0)
        ds = parser.get_parsed_content("evaluate::dataset", lazy=False)
        ds.transform = pre
        out = ds[0]
        if snr is None:
            clean = out["image"]
        else:
            assert out["image_snr"] == pytest.approx(20.0)
            assert out["image"].shape == clean.shape and not torch.equal(out["image"], clean)


def test_arrfr_overlay_items(datalist, tmp_path):
    """ArRFR's realistic items: a low-resolution, low-SNR sodium scan on the T2w grid, the clean concentration as the
    truth, in the format of the bundle's own evaluation."""
    from monai.bundle import ConfigParser

    configs = REPO / "bundles" / "arrfr" / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / n) for n in ("train.json", "evaluate.json", "evaluate_realistic.json")])
    parser["bundle_root"] = str(tmp_path)
    parser["realistic_datalist"] = str(datalist)
    parser["eval_realistic_scale"] = 2.0
    files = parser.get_parsed_content("evaluate::files")
    assert len(files) == 1 and set(files[0]) == {"subject", "lesion", "sodium", "t2w", "truth", "labels"}
    na, na_aff = load_volume(files[0]["sodium"])
    t2, t2_aff = load_volume(files[0]["t2w"])
    truth, _ = load_volume(files[0]["truth"])
    assert na.shape == t2.shape and np.allclose(na_aff, t2_aff)
    # blurred and noisy, on the concentration scale
    assert not np.allclose(na, truth, atol=1.0) and np.corrcoef(na.ravel(), truth.ravel())[0, 1] > 0.5
    assert parser.get_parsed_content("evaluate::report::metadata::datalist") == str(datalist)


def test_multi_contrast_ablation_rows_are_opt_in_and_fit_one_inr_per_contrast(tmp_path, monkeypatch):
    """``eval_realistic_ablations``: the single-contrast INR (one fit per contrast) and the vanilla INR join MC-INR;
    ``fit_and_restore`` fits each selection and returns both contrasts in order."""
    from monai.bundle import ConfigParser

    from monai_inr.evaluation import methods as M

    configs = REPO / "bundles" / "multi_contrast_inr" / "configs"
    names = {}
    for ablations in (False, True):
        parser = ConfigParser()
        parser.read_config([str(configs / "train.json"), str(configs / "evaluate_realistic.json")])
        parser["bundle_root"] = str(tmp_path)
        parser["eval_realistic_ablations"] = ablations
        names[ablations] = [name for name in parser.get_parsed_content("eval_realistic_methods")]
        if ablations:
            single = parser.get_parsed_content("eval_realistic_single")
            assert single.overrides["contrasts"] == [[0], [1]] and single.overrides["architecture"] == "vanilla"
    assert "MC-INR" in names[False] and not {"single-contrast INR", "vanilla INR"} & set(names[False])
    assert {"MC-INR", "single-contrast INR", "vanilla INR"} <= set(names[True])

    calls = []

    class Fit:
        def __init__(self, sel):
            self.sel, self.seconds, self.epochs, self.mi_history, self.stopped_early = sel, 2.0, 3, [], False

    monkeypatch.setattr(M, "fit_subject", lambda cfg, c1, c2, run: calls.append(run.get("contrasts")) or
                        Fit(run.get("contrasts")))
    monkeypatch.setattr(M, "restore_fit", lambda fit, shape, affine, chunk, sel: [np.full(shape, float(s)) for s in
                                                                                    (sel if sel else (0, 1))])
    outs, info = M.fit_and_restore(["cfg"], "a", "b", {"contrasts": [[0], [1]], "epochs": 2}, (2, 2, 2), np.eye(4))
    assert calls == [[0], [1]] and [float(o.mean()) for o in outs] == [0.0, 1.0] and info["fit_seconds"] == 4.0
    calls.clear()
    outs, _ = M.fit_and_restore(["cfg"], "a", "b", {"epochs": 2}, (2, 2, 2), np.eye(4))
    assert calls == [None] and len(outs) == 2
