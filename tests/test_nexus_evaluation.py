"""Nexus-INR evaluation (Tables 1, 2, 5): methods on the ground-truth grid, protocol scores, tables, evaluate.json."""

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser, ConfigWorkflow

from monai_inr.data.nexus import build_nexus_dataset
from monai_inr.evaluation.nexus import (
    HR_ROW,
    ArSSRMethod,
    InterpolationMethod,
    NexusEvaluation,
    arssr_method,
    available_models,
    baseline_methods,
    multi_contrast_inr_method,
    nexus_inr_methods,
    target_grid,
    train_arssr_baseline,
)
from monai_inr.errors import InputError
from monai_inr.metrics import evaluate_pair, normalize_to_reference

REPO = Path(__file__).resolve().parents[1]
ARSSR_FILES = [str(REPO / "bundles/arssr/configs/train.json"), str(REPO / "bundles/arssr/configs/quick.json")]
MC_FILES = [str(REPO / f"bundles/multi_contrast_inr/configs/{f}.json") for f in ("train", "quick")]
EVALUATE = str(REPO / "bundles/nexus_inr/configs/evaluate.json")
NEXUS_TRAIN = REPO / "bundles/nexus_inr/configs/train.json"

TINY_ARSSR = {
    "encoder_kwargs": {"features": 8, "growth": 8, "num_blocks": 1, "num_layers": 1},
    "network_def::feature_channels": 8,
    "network_def::decoder_hidden": 16,
}
TINY_ARSSR_TRAIN = {
    "isotropic_scale": False,
    "scale_range": [1.0, 4.0],
    "val_scales": [2.0],
    "lr_patch_size": [6, 6, 6],
    "num_coords": 200,
    "batch_size": 2,
    "patches_per_volume": 1,
}
TINY_MC = {"epochs": 1, "early_stopping": False, "hashgrid_max_resolution": 32, "encoding_kwargs::log2_table_size": 12}
TINY_SEG = {
    "segmentation_network": {"channels": (4, 8, 16), "strides": (2, 2)},
    "segmentation_training": {"max_epochs": 2, "num_samples": 2, "batch_size": 2},
    "segmentation_roi": 16,
}


@pytest.fixture(scope="module")
def datalist(tmp_path_factory):
    out = tmp_path_factory.mktemp("nexus_eval_data")
    return build_nexus_dataset(out, num_train=2, num_val=0, num_test=1, spacing=6.0)


@pytest.fixture(scope="module")
def test_item(datalist):
    return json.loads(datalist.read_text(encoding="utf-8"))["test"][0]


class TrilinearImplicit(torch.nn.Module):
    """An implicit 'network' whose prediction is the trilinear interpolation of its input (geometry oracle)."""

    out_channels = 1

    def encode(self, x):
        return x

    def decode(self, features, coord, lookup_coord=None):
        c = coord if lookup_coord is None else lookup_coord
        grid = c.flip(-1)[:, :, None, None, :].to(features.dtype)
        v = F.grid_sample(features, grid, mode="bilinear", align_corners=False, padding_mode="border")
        return v[:, :, :, 0, 0].permute(0, 2, 1)


def test_interpolation_rows_map_each_lr_voxel_to_its_world_position(test_item):
    shape, affine = target_grid(test_item)
    t1_lr = nib.load(test_item["t1w_lr"]).get_fdata()
    near_t1, near_t2 = InterpolationMethod(0)(test_item)
    assert near_t1.shape == shape and near_t2.shape == shape
    # T1w: thick x2 slices along z on the same FOV: HR voxel k lies in LR slice k // 2
    np.testing.assert_allclose(near_t1, t1_lr[:, :, np.arange(shape[2]) // 2], rtol=1e-6)
    tri_t1, _ = InterpolationMethod(1)(test_item)
    # HR voxel 2m+1 sits 1/4 of an LR slice above slice m: weights 3/4 and 1/4
    k = np.arange(1, shape[2] - 2, 2)
    expected = 0.75 * t1_lr[:, :, k // 2] + 0.25 * t1_lr[:, :, k // 2 + 1]
    np.testing.assert_allclose(tri_t1[:, :, k], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="t2w_lr"):
        InterpolationMethod(1)({k: v for k, v in test_item.items() if k != "t2w_lr"})


def test_arssr_row_queries_the_ground_truth_grid_per_axis(test_item, tmp_path):
    # with a network that just interpolates its input, ArSSR's output must equal trilinear through world coordinates
    a1, a2 = ArSSRMethod(TrilinearImplicit())(test_item)
    b1, b2 = InterpolationMethod(1)(test_item)
    np.testing.assert_allclose(a1, b1, rtol=1e-4, atol=1e-4 * float(np.abs(b1).max()))
    np.testing.assert_allclose(a2, b2, rtol=1e-4, atol=1e-4 * float(np.abs(b2).max()))
    # a checkpoint of another network is refused with one sentence naming the file
    bad = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(3)}, bad)
    with pytest.raises(InputError, match="other.pt"):
        arssr_method(ARSSR_FILES, checkpoint=bad, network_overrides=TINY_ARSSR)


def test_arssr_baseline_is_trained_with_the_bundle_once_and_reused(datalist, test_item, tmp_path):
    work = tmp_path / "arssr"
    ckpt = train_arssr_baseline(datalist, work, ARSSR_FILES, epochs=2, overrides={**TINY_ARSSR_TRAIN, **TINY_ARSSR})
    assert ckpt == work.resolve() / "models" / "model.pt" and ckpt.is_file()
    state = torch.load(ckpt, weights_only=True)
    assert any(k.startswith("encoder.") for k in state)
    side = json.loads((ckpt.parent / "model.pt.json").read_text(encoding="utf-8"))
    assert side["epochs"] == 2 and len(side["train_files"]) == 4  # T1w and T2w of both training subjects
    stamp = ckpt.stat().st_mtime_ns
    method = arssr_method(
        ARSSR_FILES, None, datalist, work, epochs=2, network_overrides=TINY_ARSSR, train_overrides=TINY_ARSSR_TRAIN
    )
    assert ckpt.stat().st_mtime_ns == stamp  # same settings: reused, not retrained
    t1, t2 = method(test_item)
    assert t1.shape == target_grid(test_item)[0] and np.isfinite(t1).all() and np.isfinite(t2).all()
    with pytest.raises(InputError, match="checkpoint, or a datalist"):
        arssr_method(ARSSR_FILES, None, network_overrides=TINY_ARSSR)


def test_arssr_validation_interval_always_reaches_the_last_epoch():
    from monai_inr.evaluation.nexus import _last_epoch_interval

    assert _last_epoch_interval(30, 20) == 15
    assert _last_epoch_interval(120, 20) == 20
    assert _last_epoch_interval(7, 20) == 7
    assert _last_epoch_interval(7, 3) == 1


def test_evaluation_scores_with_the_protocol_and_writes_three_tables(datalist, test_item, tmp_path):
    gt1 = nib.load(test_item["t1w"]).get_fdata().astype(np.float32)
    gt2 = nib.load(test_item["t2w"]).get_fdata().astype(np.float32)
    rng = np.random.default_rng(0)

    def oracle(item):  # ground truth plus a little noise: must beat trilinear and segment like the ground truth
        return gt1 + 1e-3 * rng.standard_normal(gt1.shape), gt2 + 1e-3 * rng.standard_normal(gt2.shape)

    mc = multi_contrast_inr_method(MC_FILES, overrides=TINY_MC)
    methods = baseline_methods(("LR input", "Trilinear"), {"MC-INR": mc}, Oracle=oracle)
    out = tmp_path / "eval"
    cache = tmp_path / "unet" / "model.pt"
    ev = NexusEvaluation(
        datalist, methods, output_dir=out, comparison_rows=["Trilinear", "MC-INR", "Oracle", "Nexus-INR"],
        ablation_rows=["Trilinear", "Oracle"], segmentation_cache=cache, **TINY_SEG,
    )
    records = ev.run()
    assert [r["method"] for r in records] == ["LR input", "Trilinear", "MC-INR", "Oracle", HR_ROW]
    by = {r["method"]: r for r in records}
    # the protocol: GT min-max to [0, 1], predictions clipped, PSNR/SSIM whole-FOV and in-mask
    tri1, _ = InterpolationMethod(1)(test_item)
    mask = nib.load(test_item["mask"]).get_fdata() > 0
    p, g = normalize_to_reference(tri1, reference=gt1)
    ref = evaluate_pair(p, g, mask=mask)
    assert by["Trilinear"]["psnr_t1w"] == pytest.approx(ref["psnr"], abs=1e-6)
    assert by["Trilinear"]["ssim_mask_t1w"] == pytest.approx(ref["ssim_mask"], abs=1e-6)
    assert by["Trilinear"]["psnr_avg"] == pytest.approx((by["Trilinear"]["psnr_t1w"] + by["Trilinear"]["psnr_t2w"]) / 2)
    assert by["Oracle"]["psnr_t2w"] > by["Trilinear"]["psnr_t2w"] + 10 and by["Oracle"]["ssim_t1w"] > 0.99
    assert by["Trilinear"]["psnr_t2w"] > by["LR input"]["psnr_t2w"]
    # segmentation: every method and the ground truth, Dice in [0, 1], HD95 in mm or NaN (absent class)
    for r in records:
        assert 0.0 <= r["dice"] <= 1.0 or math.isnan(r["dice"])
        assert "dice_tumour_core" in r and "hd95_oedema" in r
    assert "psnr_t1w" not in by[HR_ROW]
    assert by["Oracle"]["dice"] == pytest.approx(by[HR_ROW]["dice"], abs=0.05)

    doc = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert len(doc["records"]) == 5 and doc["group_by"] == ["method"]
    tables = doc["metadata"]["tables"]
    assert tables["comparison"]["rows"] == ["Trilinear", "MC-INR", "Oracle"]
    assert tables["comparison"]["not_evaluated"] == ["Nexus-INR"]
    assert tables["segmentation"]["rows"][-1] == HR_ROW
    for name, rows in (("comparison", 3), ("ablation", 2), ("segmentation", 5)):
        with open(out / f"{name}.csv", encoding="utf-8", newline="") as f:
            table = list(csv.reader(f))
        assert len(table) == rows + 1
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "## Comparison (paper Table 1)" in md and "## Ablation (paper Table 2)" in md
    assert "## Downstream segmentation (paper Table 5)" in md and f"| {HR_ROW} | 1 |" in md
    assert "Not evaluated (no method configured): Nexus-INR." in md
    assert cache.is_file() and not ev.seg_info["cached"]
    # a second evaluation reuses the cached segmentation network
    ev2 = NexusEvaluation(datalist, {"Trilinear": methods["Trilinear"]}, output_dir=tmp_path / "eval2",
                          segmentation_cache=cache, **TINY_SEG)
    ev2.run()
    assert ev2.seg_info["cached"]
    assert ev2.records[0]["dice"] == pytest.approx(by["Trilinear"]["dice"], nan_ok=True)


def test_bad_methods_and_inputs_fail_with_one_sentence(datalist, test_item, tmp_path):
    with pytest.raises(InputError, match="datalist not found"):
        NexusEvaluation(tmp_path / "none.json", {"Trilinear": InterpolationMethod(1)})
    with pytest.raises(InputError, match="lacks"):
        NexusEvaluation([{k: v for k, v in test_item.items() if k != "t2w_lr"}], {"T": InterpolationMethod(1)},
                        segmentation=False)
    with pytest.raises(InputError, match="reserved"):
        NexusEvaluation(datalist, {HR_ROW: InterpolationMethod(1)})
    with pytest.raises(InputError, match="not callables"):
        NexusEvaluation(datalist, {"T": "trilinear"})
    with pytest.raises(InputError, match="unknown interpolation row"):
        baseline_methods(("Bicubic-ish",))
    missing = dict(test_item, t1w_lr=str(tmp_path / "gone.nii.gz"))
    ev = NexusEvaluation([missing], {"T": InterpolationMethod(1)}, output_dir=tmp_path / "e", segmentation=False)
    with pytest.raises(InputError, match="gone.nii.gz"):
        ev.run()
    ev = NexusEvaluation([test_item], {"Bad": lambda item: (np.zeros((4, 4, 4)), np.zeros((4, 4, 4)))},
                         output_dir=tmp_path / "e2", segmentation=False)
    with pytest.raises(ValueError, match="ground-truth grid"):
        ev.run()
    assert not (tmp_path / "e2" / "metrics.json").exists()
    # ablation rows without a checkpoint are left out, a required one raises
    spec = {"Full": str(tmp_path / "none.pt"), "Base": {"checkpoint": str(tmp_path / "none2.pt")}}
    assert available_models(spec) == {}
    with pytest.raises(InputError, match="none.pt"):
        available_models(spec, required=["Full"])


TINY_NEXUS = {
    "feature_channels": 8,
    "encoder_kwargs": {"features": 8, "growth": 8, "num_blocks": 1, "num_layers": 1},
    "attention_window": 2,
    "attention_heads": 2,
    "pe_frequencies": 4,
    "decoder_hidden": 16,
    "decoder_layers": 2,
}

def test_evaluate_json_runs_through_the_bundle_workflow(datalist, tmp_path):
    from monai_inr.networks.nets import ArSSR

    parser = ConfigParser()
    parser.read_config(ARSSR_FILES)
    for k, v in TINY_ARSSR.items():
        parser[k] = v
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, ArSSR)
    ckpt = tmp_path / "arssr.pt"
    torch.save(net.state_dict(), ckpt)
    overrides = {
        **TINY_NEXUS,
        "bundle_root": str(tmp_path / "bundle"),
        "eval_datalist": str(datalist),
        "arssr_bundle_dir": str(REPO / "bundles/arssr"),
        "mc_inr_bundle_dir": str(REPO / "bundles/multi_contrast_inr"),
        "eval_device": "cpu",
        "eval_arssr_checkpoint": str(ckpt),
        "eval_arssr_network_overrides": TINY_ARSSR,
        "eval_mc_inr_overrides": TINY_MC,
        "eval_interpolation_rows": ["LR input", "Trilinear"],
        "eval_ablation_models": {},
        "eval_required_rows": [],
        "eval_segmentation_network": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
        "eval_segmentation_training": {"max_epochs": 1, "num_samples": 2, "batch_size": 2},
        "eval_segmentation_roi": [16, 16, 16],
    }
    wf = ConfigWorkflow(
        config_file=[str(NEXUS_TRAIN), EVALUATE], workflow_type="eval", run_id="evaluating", **overrides
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    out = tmp_path / "bundle" / "eval"
    doc = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert [r["method"] for r in doc["records"]] == ["LR input", "Trilinear", "ArSSR", "MC-INR", HR_ROW]
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "| ArSSR | 1 |" in md and "| MC-INR | 1 |" in md
    assert "Nexus-INR" in doc["metadata"]["tables"]["comparison"]["not_evaluated"]
    assert doc["metadata"]["tables"]["ablation"]["rows"] == []
    assert (out / "ablation.csv").read_text(encoding="utf-8").startswith("method,n,psnr_t1w")  # empty table: header only
    assert (tmp_path / "bundle" / "models" / "downstream_unet" / "model.pt").is_file()


def test_nexus_rows_plug_in_through_predict_subject(datalist, test_item, tmp_path):
    from monai_inr.networks.nets import NexusINR

    kw = dict(feature_channels=8, encoder_kwargs={"features": 8, "growth": 8, "num_blocks": 1, "num_layers": 1},
              attention_window=2, attention_heads=2, pe_frequencies=4, decoder_hidden=16, decoder_layers=2)
    full = NexusINR(**kw)
    ckpt = tmp_path / "nexus.pt"
    torch.save(full.state_dict(), ckpt)
    methods = nexus_inr_methods({"Nexus-INR": str(ckpt)}, network=NexusINR(**kw))
    t1, t2 = methods["Nexus-INR"](test_item)
    assert t1.shape == target_grid(test_item)[0] == t2.shape and np.isfinite(t1).all()
    with pytest.raises(InputError, match="nexus.pt"):  # an ablation network cannot load the full model's weights
        nexus_inr_methods({"Baseline": str(ckpt)}, network=NexusINR(**dict(kw, dual_branch=False)))
    ev = NexusEvaluation(datalist, methods, output_dir=tmp_path / "eval", ablation_rows=["Nexus-INR"],
                         segmentation=False)
    rec = ev.run()[0]
    assert rec["method"] == "Nexus-INR" and math.isfinite(rec["psnr_t1w"]) and math.isfinite(rec["ssim_t2w"])



def test_evaluate_json_merged_with_the_nexus_bundle_fills_the_ablation_table(datalist, tmp_path):
    files = [str(NEXUS_TRAIN), str(NEXUS_TRAIN.parent / "quick.json")]
    root = tmp_path / "bundle"
    # checkpoints of the full model and of the baseline row, built from the same configs as the evaluation builds them
    for sub, switches in (("", {}), ("ablation/baseline/", {"dual_branch": False, "cross_attention": False,
                                                            "segmentation": False})):
        parser = ConfigParser()
        parser.read_config(files)
        for k, v in {**TINY_NEXUS, **switches, "bundle_root": str(root)}.items():
            parser[k] = v
        path = root / "models" / sub / "model.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(parser.get_parsed_content("network_def").state_dict(), path)
    overrides = {
        **TINY_NEXUS,
        "bundle_root": str(root),
        "eval_datalist": str(datalist),
        "eval_device": "cpu",
        "eval_interpolation_rows": ["Trilinear"],
        "eval_arssr": None,
        "eval_mc_inr": None,
        "eval_segmentation": False,
        "eval_nexus_config_files": [files],
        "eval_ablation_models": {
            "Baseline": {
                "checkpoint": str(root / "models" / "ablation" / "baseline" / "model.pt"),
                "overrides": {**TINY_NEXUS, "dual_branch": False, "cross_attention": False, "segmentation": False},
            },
            "+ MMF": {"checkpoint": str(root / "models" / "ablation" / "mmf" / "model.pt"),
                      "overrides": {**TINY_NEXUS, "cross_attention": False, "segmentation": False}},
            "Nexus-INR": {"checkpoint": "$@ckpt_dir + '/model.pt'"},
        },
    }
    wf = ConfigWorkflow(config_file=[*files, EVALUATE], workflow_type="eval", run_id="evaluating", **overrides)
    wf.initialize()
    wf.run()
    wf.finalize()
    doc = json.loads((root / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert [r["method"] for r in doc["records"]] == ["Trilinear", "Baseline", "Nexus-INR"]
    ablation = doc["metadata"]["tables"]["ablation"]
    assert ablation["rows"] == ["Baseline", "Nexus-INR"]
    assert ablation["not_evaluated"] == ["+ MMF", "+ MMF + KD-Attn"]  # no checkpoints: listed, not evaluated
    assert doc["metadata"]["tables"]["comparison"]["rows"] == ["Trilinear", "Nexus-INR"]
    assert "| Baseline | 1 |" in (root / "eval" / "results.md").read_text(encoding="utf-8")


def test_ablation_networks_are_parsed_from_the_config_files_of_the_evaluated_profile(tmp_path):
    quick = [str(NEXUS_TRAIN), str(NEXUS_TRAIN.parent / "quick.json")]
    other = tmp_path / "wider.json"
    other.write_text(json.dumps({"feature_channels": 48}))
    evaluated = ConfigParser()
    evaluated.read_config(quick)
    network = evaluated.get_parsed_content("network_def")
    switches = {"dual_branch": False, "cross_attention": False, "segmentation": False}
    base = ConfigParser()
    base.read_config(quick)
    for k, v in switches.items():
        base[k] = v
    ckpt = tmp_path / "baseline.pt"
    torch.save(base.get_parsed_content("network_def").state_dict(), ckpt)
    rows = {"Baseline": {"checkpoint": str(ckpt), "overrides": switches}}
    # the first candidate builds a wider network than the evaluated one: the quick profile is chosen
    methods = nexus_inr_methods(rows, network=network, config_files=[[*quick, str(other)], quick])
    loaded = methods["Baseline"].network.state_dict()
    saved = torch.load(ckpt, weights_only=True)
    assert all(torch.equal(loaded[k].cpu(), saved[k]) for k in saved)
    assert not methods["Baseline"].network.dual_branch
    with pytest.raises(InputError, match="builds the evaluated Nexus-INR network"):
        nexus_inr_methods(rows, network=network, config_files=[[*quick, str(other)], [*quick, str(other)]])

