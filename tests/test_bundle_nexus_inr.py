"""The Nexus-INR bundle end to end at tiny size: train, ablation overrides, inference geometry, bad input (metadata,
model-zoo export and torchrun: test_bundle_conformance.py)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from _bundle_helpers import (
    NEXUS_INR_NET,
    REPO,
    BundleFiles,
    assert_empty_or_absent,
    assert_one_sentence_error,
)
from monai.bundle import ConfigParser, ConfigWorkflow

from monai_inr import coords
from monai_inr.inferers.nexus import predict_subject
from monai_inr.networks.nets import NexusINR

pytestmark = pytest.mark.xdist_group("nexus_inr_bundle")

FILES = BundleFiles("nexus_inr")
TRAIN, INFER, QUICK = (FILES.config(s) for s in ("train", "inference", "quick"))
META, LOGGING = FILES.meta, FILES.logging

TINY_NET = NEXUS_INR_NET


def _train(overrides):
    wf = ConfigWorkflow(
        config_file=[TRAIN, QUICK], meta_file=META, logging_file=LOGGING, workflow_type="train", **overrides
    )
    wf.initialize()
    wf.check_properties()
    wf.run()
    wf.finalize()


@pytest.fixture
def trained(trained_bundle):
    """The tiny trained bundle, built once per session (``trained_bundle``, conftest.py)."""
    t = trained_bundle("nexus_inr")
    return t.root, t.data_dir, t.overrides


def _net(overrides) -> NexusINR:
    keys = ("feature_channels", "encoder_kwargs", "decoder_hidden", "pe_frequencies")
    return NexusINR(**{k: overrides[k] for k in keys})


def test_training_writes_best_plain_state_dict(trained):
    root, _, overrides = trained
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    net = _net(overrides)
    net.load_state_dict(state)  # the full model: every module present
    assert any(k.startswith("attention.") for k in state) and any(k.startswith("seg_heads.") for k in state)
    assert list((root / "eval" / "tensorboard").glob("events.*"))
    assert not (REPO / "models").exists() and not (REPO / "eval").exists()


@pytest.mark.parametrize(
    "switches, present, absent",
    [
        (
            {"dual_branch": False, "cross_attention": False, "segmentation": False},
            ["encoder_shared.", "decoders."],
            ["encoder_spec.", "attention.", "seg_heads."],
        ),
        (
            {"dual_branch": True, "cross_attention": False, "segmentation": False},
            ["encoder_spec.", "classifier."],
            ["attention.", "seg_heads."],
        ),
        ({"dual_branch": True, "cross_attention": True, "segmentation": False}, ["attention."], ["seg_heads."]),
    ],
)
def test_ablation_is_a_config_override(tmp_path, switches, present, absent):
    parser = ConfigParser()
    parser.read_config([TRAIN, QUICK])
    parser.update({**TINY_NET, **switches, "bundle_root": str(tmp_path)})
    net = parser.get_parsed_content("network_def")
    keys = list(net.state_dict())
    assert all(any(k.startswith(p) for k in keys) for p in present)
    assert not any(k.startswith(a) for k in keys for a in absent)
    sampler = parser.get_parsed_content("train::random_transforms")[0]
    assert sampler.label_key == ("label" if switches["segmentation"] else None)


def test_ablation_baseline_trains_without_labels(trained, tmp_path):
    _, data_dir, overrides = trained
    doc = json.loads((data_dir / "datalist.json").read_text(encoding="utf-8"))
    for split in ("training", "validation", "test"):
        for it in doc[split]:
            it.pop("label")
    datalist = tmp_path / "no_labels.json"
    datalist.write_text(json.dumps(doc))
    base = {**overrides, "bundle_root": str(tmp_path / "root"), "datalist": str(datalist), "epochs": 1}
    _train({**base, "segmentation": False, "cross_attention": False, "dual_branch": False})
    state = torch.load(tmp_path / "root" / "models" / "model.pt", weights_only=True)
    assert not any(k.startswith(("encoder_spec.", "attention.", "seg_heads.")) for k in state)
    # segmentation-enhanced learning on but no labels: one sentence naming the problem before training
    with pytest.raises(Exception) as err:
        _train({**base, "bundle_root": str(tmp_path / "root2")})
    assert_one_sentence_error(err.value, "no 'label' file but segmentation-enhanced learning is on")
    assert not (tmp_path / "root2" / "models" / "model.pt").exists()


def test_position_encoding_and_shifted_windows_are_config_keys(trained, tmp_path):
    """The paper profile encodes absolute target coordinates with one attention block; shifted windows and the in-voxel
    encoding are overrides that train (the sampler's whole-volume ``position`` reaches the network) and infer."""
    for cfg in (TRAIN, INFER):
        raw = Path(cfg).read_text(encoding="utf-8")
        doc = json.loads(raw)
        assert json.dumps(doc, indent=4, ensure_ascii=False) + "\n" == raw
        assert (doc["position_encoding"], doc["shifted_windows"], doc["attention_blocks"]) == ("absolute", False, None)
        assert {"position_encoding", "shifted_windows", "attention_blocks"} <= set(doc["network_def"])
    parser = ConfigParser()
    parser.read_config([TRAIN, QUICK])
    parser.update({**TINY_NET, "bundle_root": str(tmp_path)})
    net = parser.get_parsed_content("network_def")
    assert net.position_encoding == "absolute" and net.extra_attention is None
    _, data_dir, overrides = trained
    switches = {"shifted_windows": True, "position_encoding": "in_voxel"}
    root = tmp_path / "root"
    _train({**overrides, **switches, "bundle_root": str(root), "epochs": 1})
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert any(k.startswith("extra_attention.0.") for k in state) and "pos_enc.frequencies" in state
    item = _test_item(data_dir)
    _infer(root, overrides, **switches, t1w=item["t1w_lr"], t2w=item["t2w_lr"], output_dir=str(tmp_path / "out"),
           target_spacing=16.0)
    assert len(list((tmp_path / "out").glob("*_sr.nii.gz"))) == 2


def _test_item(data_dir: Path) -> dict:
    return json.loads((data_dir / "datalist.json").read_text(encoding="utf-8"))["test"][0]


def _infer(root, overrides, **kw):
    net_kw = {k: v for k, v in overrides.items() if k in TINY_NET}
    wf = ConfigWorkflow(
        config_file=[INFER, QUICK], meta_file=META, logging_file=LOGGING, workflow_type="infer",
        **{"bundle_root": str(root), **net_kw, **kw},
    )
    wf.initialize()
    wf.run()
    wf.finalize()


def test_inference_writes_both_modalities_over_the_union_fov(trained, tmp_path):
    root, data_dir, overrides = trained
    item = _test_item(data_dir)
    spacing = [6.0, 5.0, 7.0]
    _infer(root, overrides, t1w=item["t1w_lr"], t2w=item["t2w_lr"], target_spacing=spacing, output_dir=str(tmp_path))
    outs = sorted(tmp_path.glob("*_sr.nii.gz"), key=lambda p: "T2w" in p.name)
    assert len(outs) == 2 and outs[0].name.endswith("T1w_sr.nii.gz") and outs[1].name.endswith("T2w_sr.nii.gz")
    l1, l2 = nib.load(item["t1w_lr"]), nib.load(item["t2w_lr"])
    sr1, sr2 = nib.load(str(outs[0])), nib.load(str(outs[1]))
    np.testing.assert_allclose(sr1.affine, sr2.affine)
    assert sr1.shape == sr2.shape
    np.testing.assert_allclose(coords.spacing_from_affine(sr1.affine), [6.0, 5.0, 7.0], rtol=1e-6)
    # the output grid is centred on the union FOV (here both LR scans cover the HR FOV) and its edges lie within half
    # an output voxel of the FOV edges, in world millimetres
    lo = np.minimum(*[coords.voxel_to_world(np.full(3, -0.5), img.affine) for img in (l1, l2)])
    hi = np.maximum(*[coords.voxel_to_world(np.asarray(img.shape) - 0.5, img.affine) for img in (l1, l2)])
    out_lo = coords.voxel_to_world(np.full(3, -0.5), sr1.affine)
    out_hi = coords.voxel_to_world(np.asarray(sr1.shape) - 0.5, sr1.affine)
    np.testing.assert_allclose((out_lo + out_hi) / 2, (lo + hi) / 2, atol=1e-4)
    assert np.all(np.abs(out_lo - lo) <= np.array([6.0, 5.0, 7.0]) / 2 + 1e-6)
    # the written volumes are predict_subject on that grid, in the inputs' intensity units
    net = _net(overrides)
    net.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))
    t1, t2 = predict_subject(net, item["t1w_lr"], item["t2w_lr"], sr1.shape, sr1.affine, tile_size=8)
    np.testing.assert_allclose(sr1.get_fdata(), t1, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(sr2.get_fdata(), t2, rtol=1e-4, atol=1e-4)
    # a voxel of the output at a world position inside the brain is near the HR ground truth's intensity range
    gt = nib.load(item["t1w"]).get_fdata()
    assert gt.min() - 1.0 < float(t1.mean()) < gt.max() + 1.0


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "file not found"),
        ("no_overlap", "do not overlap"),
        ("channels", "mismatched channel counts"),
        ("huge", "memory budget"),
        ("spacing0", "target_spacing must be positive"),
        ("other_net", "checkpoint of another network"),
    ],
)
def test_bad_input_fails_with_one_sentence_and_writes_nothing(trained, tmp_path, case, message):
    root, data_dir, overrides = trained
    item = _test_item(data_dir)
    kw = {"t1w": item["t1w_lr"], "t2w": item["t2w_lr"], "target_spacing": 8.0, "output_dir": str(tmp_path / "out")}
    t2 = nib.load(item["t2w_lr"])
    if case == "missing":
        kw["t2w"] = str(tmp_path / "missing.nii.gz")
    elif case == "no_overlap":
        far = t2.affine.copy()
        far[:3, 3] += 5000.0
        path = tmp_path / "far_T2w.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(t2.dataobj), far), str(path))
        kw["t2w"] = str(path)
    elif case == "channels":
        path = tmp_path / "two_channel_T1w.nii.gz"
        t1 = nib.load(item["t1w_lr"])
        nib.save(nib.Nifti1Image(np.stack([np.asarray(t1.dataobj)] * 2, axis=-1), t1.affine), str(path))
        kw["t1w"] = str(path)
    elif case == "huge":
        kw.update(target_spacing=0.05, memory_budget_gb=0.5)
    elif case == "spacing0":
        kw["target_spacing"] = 0.0
    elif case == "other_net":
        other = tmp_path / "other.pt"
        torch.save(torch.nn.Linear(3, 3).state_dict(), other)
        kw["ckpt_path"] = str(other)
    with pytest.raises(Exception) as err:
        _infer(root, overrides, **kw)
    assert_one_sentence_error(err.value, message)
    assert_empty_or_absent(tmp_path / "out")


def test_cpu_profile_trains_on_realistic_anatomy(tmp_path):
    """``cpu.json``: the quick network on the realistic Nexus set (held-out real anatomy, thick-slice scans)."""
    from monai_inr.data import anatomy as A

    if not A.colin27_available():
        pytest.skip("the Colin27 brain is not installed (Debian package mricron-data, or set MONAI_INR_COLIN27_DIR)")
    parser = ConfigParser()
    parser.read_config([TRAIN, FILES.config("cpu")])
    parser.update({"bundle_root": str(tmp_path), "data_spacing": 6.0, "num_train_subjects": 1, "num_val_subjects": 1,
                   "num_test_subjects": 0})
    doc = json.loads(Path(parser.get_parsed_content("datalist")).read_text(encoding="utf-8"))
    assert doc["metadata"]["parameters"]["source"] == "realistic"
    assert [len(doc[s]) for s in ("training", "validation", "test")] == [1, 1, 0]
    quick = ConfigParser()
    quick.read_config([TRAIN, QUICK])
    assert parser["encoder_kwargs"] == quick["encoder_kwargs"] and parser["epochs"] == quick["epochs"]
