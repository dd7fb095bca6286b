"""Engine pieces for target + reference bundles: batch preparation, input checks, evaluation items and metrics."""

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from monai_inr.engines import PrepareBatchReference, validate_target_reference
from monai_inr.engines.checks import load_ablation_checkpoint, load_liif_checkpoint
from monai_inr.errors import InputError
from monai_inr.evaluation import ReferenceSRMetrics, foreground_slices, format_results_table, reference_eval_items
from monai_inr.inferers import SliceWiseInferer
from monai_inr.networks import DualArbNet


pytestmark = pytest.mark.usefixtures("one_thread")


def test_prepare_batch_reference():
    batch = {"image": torch.rand(2, 1, 4, 4), "reference": torch.rand(2, 1, 8, 8), "label": torch.rand(2, 1, 12, 12)}
    image, label, args, kwargs = PrepareBatchReference()(batch)
    assert torch.equal(image, batch["image"]) and torch.equal(args[0], batch["reference"])
    assert kwargs == {"output_shape": (12, 12)} and torch.equal(label, batch["label"])
    _, label, args, kwargs = PrepareBatchReference()({"image": batch["image"]})
    assert label is None and args == () and kwargs == {}


def _nifti(path, data, affine=None):
    a = np.diag([2.0, 2.0, 3.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), a), str(path))
    return str(path)


def test_validate_target_reference(tmp_path):
    rng = np.random.default_rng(0)
    t = _nifti(tmp_path / "t.nii.gz", rng.random((8, 10, 3)))
    hr = np.diag([1.0, 1.0, 3.0, 1.0])
    hr[:3, 3] = [-0.5, -0.5, 0.0]
    r = _nifti(tmp_path / "r.nii.gz", rng.random((16, 20, 3)), hr)
    assert validate_target_reference(t, r, 2.0, max_scale=8) == ([t], [r])
    assert validate_target_reference([t, t], r, 2.0)[1] == [r, r]  # one reference for several targets
    s2d = _nifti(tmp_path / "s.nii.gz", rng.random((8, 10)))
    validate_target_reference(s2d, s2d, 1.5)
    cases = {
        "channel": (t, _nifti(tmp_path / "c.nii.gz", rng.random((8, 10, 3, 2))), 2.0, "has 2"),
        "cover": (t, _nifti(tmp_path / "small.nii.gz", rng.random((8, 5, 3))), 2.0, "does not cover"),
        "below": (t, r, 0.8, "below 1"),
        "above": (t, r, 9.0, "exceeds the supported maximum"),
        "none": (t, "", 2.0, "no reference image"),
        "count": ([t, t, t], [r, r], 2.0, "3 target images but 2 reference"),
        "missing": (t, str(tmp_path / "nope.nii.gz"), 2.0, "file not found"),
        "nan": (_nifti(tmp_path / "nan.nii.gz", np.full((4, 4, 2), np.nan)), r, 2.0, "NaN"),
    }
    for name, (tt, rr, s, msg) in cases.items():
        with pytest.raises(InputError, match=msg):
            validate_target_reference(tt, rr, s, max_scale=8)


def test_eval_items_and_foreground_slices(tmp_path):
    mask = np.zeros((6, 6, 10), np.uint8)
    mask[:, :, 2:8] = 1
    m = _nifti(tmp_path / "m.nii.gz", mask)
    assert foreground_slices(m, axis=2, count=3) == [2, 4, 7]
    items = reference_eval_items([{"image": "a", "mask": m}], [2.0, 4.0], ["HR", "LR"], slices_per_subject=2)
    assert len(items) == 2 * 2 * 2
    assert [(i["scale"], i["reference_type"], i["ref_scale"]) for i in items[::2]] == [
        (2.0, "HR", 1.0), (2.0, "LR", 2.0), (4.0, "HR", 1.0), (4.0, "LR", 4.0)]
    with pytest.raises(ValueError):
        reference_eval_items([{"image": m}], [2.0], ["XR"])


def test_results_table():
    summary = [
        {"scale": 2.0, "reference": "HR", "method": "Dual-ArbNet", "psnr_mean": 30.0},
        {"scale": 4.0, "reference": "HR", "method": "Dual-ArbNet", "psnr_mean": 26.0},
        {"scale": 2.0, "reference": "none", "method": "cubic", "psnr_mean": 28.0},
        {"scale": 4.0, "reference": "none", "method": "cubic", "psnr_mean": float("nan")},
    ]
    table = format_results_table(summary, "psnr", 1).splitlines()
    assert table[0] == "| reference | method | ×2 | ×4 | mean |"
    assert table[2] == "| HR | Dual-ArbNet | 30.0 | 26.0 | 28.0 |" and table[3] == "| none | cubic | 28.0 | – | – |"


def test_reference_metrics_handler(tmp_path):
    torch.manual_seed(0)
    kw = dict(encoder_kwargs=dict(num_blocks=1, num_layers=1, features=4, growth=4), hidden=4, skip_hidden=4,
              reduction=2)
    net, abl = DualArbNet(**kw).eval(), DualArbNet(**kw, use_reference=False).eval()
    inferer = SliceWiseInferer()
    label = MetaTensor(torch.rand(1, 1, 12, 12), meta={"filename_or_obj": ["/x/sub-1_T2w.nii.gz"]})
    image = torch.rand(1, 1, 6, 6)
    batches = [
        {"image": image, "reference": torch.rand(1, 1, 12, 12), "scale": torch.tensor([2.0]), "reference_type": ["HR"],
         "slice_index": torch.tensor([3])},
        {"image": image, "reference": torch.rand(1, 1, 6, 6), "scale": torch.tensor([2.0]), "reference_type": ["LR"],
         "slice_index": torch.tensor([3])},
    ]

    def step(engine, batch):
        pred = inferer(batch["image"], net, batch["reference"], output_shape=(12, 12))
        return {"image": batch["image"], "label": label, "pred": pred}

    engine = Engine(step)
    engine.inferer = inferer
    handler = ReferenceSRMetrics(tmp_path, extra_networks={"w/o ref": abl}, reference_free=["w/o ref"],
                                 figure_dir=tmp_path / "figures")
    handler.attach(engine)
    engine.run(batches, max_epochs=1)
    recs = handler.records
    assert sorted((r["reference"], r["method"]) for r in recs) == [
        ("HR", "Dual-ArbNet"), ("LR", "Dual-ArbNet"), ("none", "cubic"), ("none", "w/o ref")]
    assert all(r["subject"] == "sub-1_T2w" and r["slice"] == 3 and np.isfinite(r["psnr"]) for r in recs)
    doc = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert doc["group_by"] == ["scale", "reference", "method"]
    assert "| none | w/o ref |" in (tmp_path / "metrics_table.md").read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["sub-1_T2w_x2_ref-HR.png",
                                                                         "sub-1_T2w_x2_ref-LR.png"]


def test_missing_ablation_checkpoint_names_the_command(tmp_path):
    net = DualArbNet(encoder_kwargs=dict(num_blocks=1, num_layers=1, features=4, growth=4), hidden=4, skip_hidden=4,
                     reduction=2, use_reference=False)
    assert load_ablation_checkpoint(net, tmp_path / "x.pt", enabled=False) is None
    with pytest.raises(InputError, match="--use_reference false"):
        load_ablation_checkpoint(net, tmp_path / "x.pt")
    torch.save(net.state_dict(), tmp_path / "ok.pt")
    assert load_ablation_checkpoint(net, tmp_path / "ok.pt") is net
    with pytest.raises(InputError, match=r"LIIF checkpoint is missing; train it with the same configs plus liif\.json.*--eval_liif false"):
        load_liif_checkpoint(net, tmp_path / "liif.pt")
