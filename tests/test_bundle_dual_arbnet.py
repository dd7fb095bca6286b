"""The Dual-ArbNet bundle end to end at tiny size: train (+ ablation), evaluate, infer, bad input (metadata, model-zoo
export and torchrun: test_bundle_conformance.py)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from _bundle_helpers import DUAL_ARBNET_NET, REPO, BundleFiles, assert_empty_or_absent, assert_one_sentence_error
from monai.bundle import ConfigWorkflow

from monai_inr import coords
from monai_inr.errors import find_input_error
from monai_inr.inferers import SliceWiseInferer
from monai_inr.networks.nets import DualArbNet

pytestmark = [pytest.mark.xdist_group("dual_arbnet_bundle"), pytest.mark.usefixtures("one_thread")]

FILES = BundleFiles("dual_arbnet")
TRAIN, EVALUATE, INFER, QUICK, LIIF, COMPLEX = (FILES.config(s) for s in ("train", "evaluate", "inference", "quick", "liif",
                                                                        "complex"))
META, LOGGING = FILES.meta, FILES.logging

TINY_NET = DUAL_ARBNET_NET


def _run(config_files, workflow_type, **overrides):
    wf = ConfigWorkflow(config_file=config_files, meta_file=META, logging_file=LOGGING, workflow_type=workflow_type,
                        **overrides)
    wf.initialize()
    if workflow_type == "train":
        assert wf.check_properties() in (None, [])
    wf.run()
    wf.finalize()


@pytest.fixture
def trained(trained_bundle):
    """Trained once per test session (``trained_bundle``, conftest.py), also under pytest-xdist."""
    t = trained_bundle("dual_arbnet")
    return t.root, t.data_dir, t.overrides


def test_training_writes_plain_state_dicts(trained):
    root, _, _ = trained
    main = torch.load(root / "models" / "model.pt", weights_only=True)
    abl = torch.load(root / "models" / "single_contrast" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in main.values())
    assert "decoder.project_reference.weight" in main and "decoder.project_reference.weight" not in abl
    assert (root / "eval" / "tensorboard").is_dir()
    assert not (REPO / "models").exists() and not (REPO / "eval").exists()


def test_evaluation_table_over_scales_references_and_methods(trained):
    root, _, overrides = trained
    out = root / "eval_run"
    _run([TRAIN, EVALUATE, QUICK], "eval", **{**overrides, "output_dir": str(out), "eval_scales": [1.5, 8.0],
                                             "eval_slices": 1})
    doc = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    keys = {(r["scale"], r["reference"], r["method"]) for r in doc["records"]}
    expected = {(s, ref, "Dual-ArbNet") for s in (1.5, 8.0) for ref in ("HR", "LR")}
    expected |= {(s, "none", m) for s in (1.5, 8.0) for m in ("w/o ref", "cubic")}
    assert keys == expected
    assert all(np.isfinite([r["psnr"], r["ssim"], r["psnr_mask"], r["ssim_mask"]]).all() for r in doc["records"])
    table = (out / "metrics_table.md").read_text(encoding="utf-8")
    assert "| HR | Dual-ArbNet |" in table and "×8" in table
    assert sorted(p.name for p in out.glob("*.csv")) == ["metrics_scale-1.5.csv", "metrics_scale-8.csv"]


def test_liif_comparison_trains_through_its_overlay_and_is_scored_without_reference(trained):
    """The LIIF row (the paper's single-contrast arbitrary-scale comparison): ``liif.json`` trains a LIIF network on
    the same pipeline into ``models/liif``; the evaluation scores it once per slice and scale, reference "none"."""
    root, _, overrides = trained
    tiny = {**overrides, "liif_hidden": 8}
    _run([TRAIN, QUICK, LIIF], "train", **tiny)
    state = torch.load(root / "models" / "liif" / "model.pt", weights_only=True)
    assert "decoder.first.weight" in state and not any(k.startswith("decoder.project_reference") for k in state)
    out = root / "eval_liif"
    _run([TRAIN, EVALUATE, QUICK], "eval", **{**tiny, "output_dir": str(out), "eval_scales": [2.0], "eval_slices": 1,
                                             "eval_ablation": False, "eval_liif": True})
    doc = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    keys = {(r["reference"], r["method"]) for r in doc["records"]}
    assert keys == {("HR", "Dual-ArbNet"), ("LR", "Dual-ArbNet"), ("none", "LIIF"), ("none", "cubic")}


def test_complex_profile_trains_on_phased_data_and_is_scored_on_magnitude(trained, tmp_path):
    """``complex.json`` (the paper's complex data): the normalised magnitude images get a smooth random phase before
    the k-space truncation, the network sees (real, imaginary) channel pairs, and the evaluation scores magnitudes."""
    _, _, overrides = trained
    args = {**overrides, "bundle_root": str(tmp_path), "eval_ablation": False}
    parser = ConfigWorkflow(config_file=[TRAIN, QUICK, COMPLEX], meta_file=META, logging_file=LOGGING,
                            workflow_type="train", **args).parser
    sample = parser.get_parsed_content("train::preprocessing")(parser.get_parsed_content("train_files")[0])
    assert sample["image"].shape[0] == 2 and sample["label"].shape[0] == 2 and sample["reference"].shape[0] == 2
    assert float(sample["label"][1].abs().max()) > 0.05  # a real imaginary part: the phase was applied
    _run([TRAIN, QUICK, COMPLEX], "train", **args)
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert state["encoder.sfe1.weight"].shape[1] == 2  # (real, imaginary) input channels
    out = tmp_path / "eval_complex"
    _run([TRAIN, EVALUATE, QUICK, COMPLEX], "eval", **{**args, "output_dir": str(out), "eval_scales": [2.0],
                                                      "eval_slices": 1})
    doc = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert {r["method"] for r in doc["records"]} == {"Dual-ArbNet", "cubic"}
    assert all(np.isfinite(r["psnr"]) and 0.0 <= r["ssim"] <= 1.0 for r in doc["records"])


def test_evaluation_refuses_sizes_kspace_cropping_cannot_honour(trained):
    root, _, overrides = trained
    out = root / "eval_odd"
    with pytest.raises(Exception) as err:  # 49 x 58 slices without the crop-to-24 rule, x3
        _run([TRAIN, EVALUATE, QUICK], "eval", **{**overrides, "output_dir": str(out), "eval_scales": [3.0],
                                                 "eval_slices": 1, "crop_multiple": 1, "eval_ablation": False})
    sentence = str(find_input_error(err.value))
    assert "cannot be k-space cropped by x3" in sentence and "\n" not in sentence
    assert not (out / "metrics.json").exists()


def _subject(data_dir: Path, key: str) -> Path:
    datalist = json.loads((data_dir / "datalist.json").read_text(encoding="utf-8"))
    return Path(datalist["test"][0][key])


def _net(root: Path) -> DualArbNet:
    net = DualArbNet(**TINY_NET)
    net.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))
    return net.eval()


def _infer(root, overrides, **kw):
    net_keys = {k: v for k, v in overrides.items() if k in TINY_NET}
    _run([INFER, QUICK], "infer", **{"bundle_root": str(root), **net_keys, **kw})


def _normalised(x):
    return (x - x.min()) / (x.max() - x.min())


def test_inference_volume_with_a_reference_of_another_grid(trained, tmp_path):
    root, data_dir, overrides = trained
    t2, pd = nib.load(str(_subject(data_dir, "t2w"))), nib.load(str(_subject(data_dir, "pd")))
    # target: a sub-volume of T2w (10 slices); reference: the whole PD volume, so the FOVs differ
    sub = (slice(6, 40), slice(8, 50), slice(18, 28))
    aff = t2.affine.copy()
    aff[:3, 3] = coords.voxel_to_world(np.array([6.0, 8.0, 18.0]), t2.affine)
    target = tmp_path / "target_T2w.nii.gz"
    nib.save(nib.Nifti1Image(t2.get_fdata()[sub].astype(np.float32), aff), str(target))
    _infer(root, overrides, input_image=str(target), reference_image=str(_subject(data_dir, "pd")), scale=2.5,
           output_dir=str(tmp_path / "out"))
    (out,) = list((tmp_path / "out").glob("*_sr.nii.gz"))
    sr = nib.load(str(out))
    assert sr.shape == (85, 105, 10)
    edges = [(np.full(3, -0.5), np.full(3, -0.5)), (np.array([33.5, 41.5, 9.5]), np.array([84.5, 104.5, 9.5]))]
    for e_in, e_out in edges:
        np.testing.assert_allclose(coords.voxel_to_world(e_in, aff), coords.voxel_to_world(e_out, sr.affine), atol=1e-4)
    # the written volume is the network's prediction through the same world mapping, mapped back to T2w's range
    lr = t2.get_fdata()[sub].astype(np.float32)
    from monai.data import MetaTensor

    stored = nib.load(str(target)).affine  # float32 in the file: nearest-pixel ties follow the stored affine
    t_in = MetaTensor(torch.from_numpy(_normalised(lr))[None, None], affine=torch.as_tensor(stored))
    r_np = pd.get_fdata().astype(np.float32)
    r_in = MetaTensor(torch.from_numpy(_normalised(r_np))[None, None], affine=torch.as_tensor(pd.affine))
    pred = SliceWiseInferer(scale=2.5)(t_in, _net(root), r_in)
    expected = pred[0, 0].numpy() * (lr.max() - lr.min()) + lr.min()
    np.testing.assert_allclose(sr.get_fdata(), expected, rtol=1e-4, atol=1e-4 * (lr.max() - lr.min()))


def test_inference_on_a_2d_slice(trained, tmp_path):
    root, data_dir, overrides = trained
    t2, pd = nib.load(str(_subject(data_dir, "t2w"))), nib.load(str(_subject(data_dir, "pd")))
    k = 23
    aff = t2.affine.copy()
    aff[:3, 3] = coords.voxel_to_world(np.array([0.0, 0.0, k]), t2.affine)
    t_path, r_path = tmp_path / "slice_T2w.nii.gz", tmp_path / "slice_PD.nii.gz"
    nib.save(nib.Nifti1Image(t2.get_fdata()[:, :, k].astype(np.float32), aff), str(t_path))
    nib.save(nib.Nifti1Image(pd.get_fdata()[:, :, k].astype(np.float32), aff), str(r_path))
    _infer(root, overrides, input_image=str(t_path), reference_image=str(r_path), scale=1.5, output_dir=str(tmp_path))
    sr = nib.load(str(tmp_path / "slice_T2w_sr.nii.gz"))
    assert sr.shape == (74, 87)
    np.testing.assert_allclose(coords.spacing_from_affine(sr.affine)[:2],
                               coords.spacing_from_affine(aff)[:2] * np.array([49 / 74, 58 / 87]), rtol=1e-6)


@pytest.mark.parametrize(
    "case, message",
    [
        ("channels", "has 2 channel(s)"),
        ("coverage", "does not cover the target's field of view"),
        ("plane", "not sliced in the target's plane"),
        ("below", "below 1"),
        ("above", "exceeds the supported maximum of 8"),
        ("no_reference", "no reference image"),
        ("missing", "file not found"),
        ("other_net", "checkpoint of another network"),
    ],
)
def test_bad_input_fails_with_one_sentence_and_writes_nothing(trained, tmp_path, case, message):
    root, data_dir, overrides = trained
    t2, pd = _subject(data_dir, "t2w"), _subject(data_dir, "pd")
    img = nib.load(str(pd))
    kw = {"input_image": str(t2), "reference_image": str(pd), "scale": 2.0, "output_dir": str(tmp_path / "out")}
    bad = tmp_path / "bad.nii.gz"
    if case == "channels":
        nib.save(nib.Nifti1Image(np.random.rand(*img.shape, 2).astype(np.float32), img.affine), str(bad))
        kw["input_image"], kw["reference_image"] = str(bad), str(pd)
    elif case == "coverage":
        nib.save(nib.Nifti1Image(img.get_fdata()[:30].astype(np.float32), img.affine), str(bad))
        kw["reference_image"] = str(bad)
    elif case == "plane":
        c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
        rot = np.eye(4)
        rot[:3, :3] = [[1, 0, 0], [0, c, -s], [0, s, c]]
        nib.save(nib.Nifti1Image(img.get_fdata().astype(np.float32), rot @ img.affine), str(bad))
        kw["reference_image"] = str(bad)
    elif case == "below":
        kw["scale"] = 0.5
    elif case == "above":
        kw["scale"] = 9.0
    elif case == "no_reference":
        kw["reference_image"] = ""
    elif case == "missing":
        kw["reference_image"] = str(tmp_path / "nothing.nii.gz")
    elif case == "other_net":
        other = tmp_path / "other.pt"
        torch.save(torch.nn.Linear(3, 3).state_dict(), other)
        kw["ckpt_path"] = str(other)
    with pytest.raises(Exception) as err:
        _infer(root, overrides, **kw)
    assert_one_sentence_error(err.value, message)
    assert_empty_or_absent(tmp_path / "out")
