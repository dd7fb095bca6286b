"""The multi-contrast INR bundle end to end at tiny size: fit, evaluate, infer, bad input (metadata, model-zoo export
and torchrun: test_bundle_conformance.py)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from _bundle_helpers import (
    MULTI_CONTRAST_INR_NET,
    REPO,
    BundleFiles,
    assert_empty_or_absent,
    assert_one_sentence_error,
    multi_contrast_inr_fit,
)
from monai.bundle import ConfigWorkflow

from monai_inr import coords
from monai_inr.coords import SharedFrame
from monai_inr.data.coordinates import ContrastPair
from monai_inr.engines import network_from_checkpoint
from monai_inr.networks.nets import MultiContrastINR

pytestmark = pytest.mark.xdist_group("multi_contrast_inr_bundle")

FILES = BundleFiles("multi_contrast_inr")
CONFIGS = FILES.configs
TRAIN, EVALUATE, INFER, QUICK, HASHGRID = (
    str(CONFIGS / f) for f in ("train.json", "evaluate.json", "inference.json", "quick.json", "hashgrid.json")
)
META, LOGGING = FILES.meta, FILES.logging


def workflow(config_file, workflow_type="train", **overrides):
    return ConfigWorkflow(
        config_file=config_file, meta_file=META, logging_file=LOGGING, workflow_type=workflow_type, **overrides
    )


TINY_NET = MULTI_CONTRAST_INR_NET
TINY_DATA = {"data_spacing": 8.0, "slice_factor": 2.0, "num_eval_subjects": 1, "eval_lesion": 0.0}
tiny_fit = multi_contrast_inr_fit


@pytest.fixture
def trained(trained_bundle):
    """One synthetic subject and the INR fitted to it, built once per session (``trained_bundle``, conftest.py)."""
    t = trained_bundle("multi_contrast_inr")
    return t.root, t.data_dir, t.extra["item"], t.overrides


def test_configs_are_indented_json():
    for f in CONFIGS.glob("*.json"):
        text = f.read_text(encoding="utf-8")
        assert text == json.dumps(json.loads(text), indent=4) + "\n", f.name


def test_training_writes_a_self_contained_checkpoint(trained):
    root, _, item, _ = trained
    saved = torch.load(root / "models" / "model.pt", weights_only=True)
    # the fit's checkpoint carries the network it was fitted as, and that definition rebuilds it
    assert saved["network_def"]["_target_"] == "monai_inr.networks.nets.MultiContrastINR"
    rebuilt = network_from_checkpoint(torch.nn.Identity(), root / "models" / "model.pt")
    assert isinstance(rebuilt, MultiContrastINR)
    state = saved["model"]
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert rebuilt.state_dict().keys() == state.keys()
    for key in ("encoding.B", "frame_affine", "fov_bounds", "intensity_range"):
        assert key in state
    # the stored frame is the union FOV of the two inputs
    frame = SharedFrame.from_affine(state["frame_affine"], state["fov_bounds"])
    hr = nib.load(item["label1"])
    np.testing.assert_allclose(frame.lower, coords.voxel_to_world(np.full(3, -0.5), hr.affine), atol=1e-4)
    np.testing.assert_allclose(frame.upper, coords.voxel_to_world(np.asarray(hr.shape) - 0.5, hr.affine), atol=1e-4)
    raw = nib.load(item["contrast2"]).get_fdata()
    np.testing.assert_allclose(state["intensity_range"][1].numpy(), [raw.min(), raw.max()], rtol=1e-5)
    assert (root / "eval" / "tensorboard").is_dir()
    assert not (REPO / "models").exists() and not (REPO / "eval").exists()


def test_evaluation_writes_metrics_for_every_method(trained):
    root, data_dir, _, overrides = trained
    out = root / "evaluation"
    kw = {k: v for k, v in overrides.items() if k not in ("contrast1", "contrast2")}
    wf = ConfigWorkflow(
        config_file=[TRAIN, EVALUATE, QUICK], meta_file=META, logging_file=LOGGING, workflow_type="eval",
        **{**kw, **TINY_DATA, "eval_dataset_dir": str(data_dir), "output_dir": str(out),
           "eval_fit_overrides": {k: v for k, v in kw.items() if k != "bundle_root"}},
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    methods = [r["method"] for r in metrics["records"]]
    assert methods == ["cubic", "single_contrast_inr", "vanilla_inr", "split_head_inr"]
    for r in metrics["records"]:
        for n in ("t1w", "t2w"):
            assert np.isfinite([r[f"psnr_{n}"], r[f"psnr_mask_{n}"], r[f"ssim_{n}"], r[f"ssim_mask_{n}"]]).all()
        assert np.isfinite([r["eps_mi_t1w"], r["eps_mi_t2w"], r["eps_mi_joint"]]).all()
    assert metrics["metadata"]["mi_history"]["sub-0000"]["split_head_inr"]
    assert (out / "metrics.csv").is_file()
    assert len(list((out / "predictions").glob("*.nii.gz"))) == 8


def _infer(root, overrides, **kw):
    net = {k: v for k, v in overrides.items() if k in TINY_NET}
    wf = ConfigWorkflow(
        config_file=[INFER, QUICK], meta_file=META, logging_file=LOGGING, workflow_type="infer",
        **{"bundle_root": str(root), **net, **kw},
    )
    wf.initialize()
    wf.run()
    wf.finalize()


def test_inference_samples_both_contrasts_on_the_union_fov(trained, tmp_path):
    root, _, item, overrides = trained
    _infer(root, overrides, contrast1=item["contrast1"], contrast2=item["contrast2"], target_spacing=6.0,
           output_dir=str(tmp_path))
    outs = sorted(p.name for p in tmp_path.glob("*.nii.gz"))
    stems = [Path(item[k]).name.replace(".nii.gz", "") for k in ("contrast1", "contrast2")]
    assert outs == sorted(f"{s}_sr.nii.gz" for s in stems)
    hr = nib.load(item["label1"])
    lo_fov = coords.voxel_to_world(np.full(3, -0.5), hr.affine)
    hi_fov = coords.voxel_to_world(np.asarray(hr.shape) - 0.5, hr.affine)
    state = torch.load(root / "models" / "model.pt", weights_only=True)["model"]
    net = network_from_checkpoint(torch.nn.Identity(), root / "models" / "model.pt").eval()
    frame = SharedFrame.from_affine(state["frame_affine"], state["fov_bounds"])
    for c, stem in enumerate(stems):
        img = nib.load(str(tmp_path / f"{stem}_sr.nii.gz"))
        # isotropic at exactly the target spacing, centred on the union FOV, edges within half a voxel of it
        np.testing.assert_allclose(coords.spacing_from_affine(img.affine), [6.0, 6.0, 6.0], atol=1e-5)
        shape = np.asarray(img.shape)
        centre = coords.voxel_to_world((shape - 1) / 2.0, img.affine)
        np.testing.assert_allclose(centre, (lo_fov + hi_fov) / 2, atol=1e-4)
        assert np.all(np.abs(coords.voxel_to_world(np.full(3, -0.5), img.affine) - lo_fov) <= 3.0 + 1e-4)
        assert np.all(np.abs(coords.voxel_to_world(shape - 0.5, img.affine) - hi_fov) <= 3.0 + 1e-4)
        # a voxel's value is the network at that voxel's world position, in the input's intensity units
        ijk = np.array([[1, 2, 3], [shape[0] // 2, shape[1] // 2, shape[2] // 2]])
        world = coords.voxel_to_world(ijk, img.affine)
        with torch.no_grad():
            v = net.query(torch.as_tensor(frame.world_to_normalized(world), dtype=torch.float32))[:, c].clamp(0, 1)
        lo, hi = state["intensity_range"][c].tolist()
        np.testing.assert_allclose(img.get_fdata()[tuple(ijk.T)], v.numpy() * (hi - lo) + lo, rtol=1e-4, atol=1e-4 * hi)


def _write_bad(tmp_path, item, case):
    src = nib.load(item["contrast1"])
    p = tmp_path / f"{case}.nii.gz"
    if case == "4d":
        img = nib.Nifti1Image(np.random.rand(6, 6, 6, 2).astype(np.float32), src.affine)
    elif case == "nan":
        data = src.get_fdata().astype(np.float32)
        data[1, 1, 1] = np.nan
        img = nib.Nifti1Image(data, src.affine)
    elif case == "no_overlap":
        far = src.affine.copy()
        far[:3, 3] += 1000.0
        img = nib.Nifti1Image(src.get_fdata().astype(np.float32), far)
    elif case in ("no_affine", "zero_voxel"):
        hdr = src.header.copy()
        hdr["qform_code"] = 0
        hdr["sform_code"] = 0 if case == "no_affine" else 1
        if case == "zero_voxel":
            hdr["srow_x"] = [0.0, 0.0, 0.0, float(src.affine[0, 3])]
        img = nib.Nifti1Image(src.get_fdata().astype(np.float32), None, header=hdr)
    else:
        raise ValueError(case)
    nib.save(img, str(p))
    return str(p)


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_overlap", "do not overlap"),
        ("4d", "expected a 3D image but got 4D"),
        ("no_affine", "no scanner geometry"),
        ("zero_voxel", "zero voxel size"),
        ("nan", "NaN or Inf"),
        ("missing", "file not found"),
        ("only_one", "no file given"),
    ],
)
def test_bad_training_input_fails_with_one_sentence_and_writes_nothing(trained, tmp_path, case, message):
    _, _, item, _ = trained
    root = tmp_path / "root"
    if case in ("missing", "only_one"):
        c1 = "" if case == "only_one" else str(tmp_path / "absent.nii.gz")
    else:
        c1 = _write_bad(tmp_path, item, case)
    kw = {**tiny_fit(root), "contrast1": c1, "contrast2": item["contrast2"]}
    with pytest.raises(Exception) as err:
        wf = workflow([TRAIN, QUICK], **kw)
        wf.initialize()
        wf.run()
    assert_one_sentence_error(err.value, message)
    assert not root.exists() or not any(root.rglob("*.pt"))


@pytest.mark.parametrize(
    "case, message",
    [
        ("spacing0", "target_spacing must be positive"),
        ("negative", "target_spacing must be positive"),
        ("huge", "memory budget"),
        ("no_ckpt", "checkpoint not found"),
        ("other_net", "checkpoint of another network"),
        ("swapped", "are given in swapped order"),
        ("foreign", "not the image the checkpoint was fitted to"),
        ("exists", "already exists"),
    ],
)
def test_bad_inference_input_fails_with_one_sentence_and_writes_nothing(trained, tmp_path, case, message):
    root, _, item, overrides = trained
    kw = {"target_spacing": 6.0, "output_dir": str(tmp_path / "out")}
    if case == "swapped":
        kw.update(contrast1=item["contrast2"], contrast2=item["contrast1"])
    elif case == "foreign":  # same geometry, other content
        src = nib.load(item["contrast1"])
        other = tmp_path / "other_t1w.nii.gz"
        nib.save(nib.Nifti1Image(src.get_fdata().astype(np.float32) * 2.0 + 1.0, src.affine, src.header), str(other))
        kw.update(contrast1=str(other), contrast2=item["contrast2"])
    elif case == "exists":
        kw.update(contrast1=item["contrast1"], contrast2=item["contrast2"])
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / (Path(item["contrast2"]).name.replace(".nii.gz", "") + "_sr.nii.gz")).write_bytes(b"x")
    if case == "spacing0":
        kw["target_spacing"] = 0.0
    elif case == "negative":
        kw["target_spacing"] = [1.0, -1.0, 1.0]
    elif case == "huge":
        kw["target_spacing"] = 0.01
    elif case == "no_ckpt":
        kw["ckpt_path"] = str(tmp_path / "nothing.pt")
    elif case == "other_net":
        other = tmp_path / "other.pt"
        torch.save(torch.nn.Linear(3, 2).state_dict(), other)
        kw["ckpt_path"] = str(other)
    with pytest.raises(Exception) as err:
        _infer(root, overrides, **kw)
    assert_one_sentence_error(err.value, message)
    if case == "exists":  # the earlier result is untouched and nothing else was written
        assert [p.read_bytes() for p in (tmp_path / "out").iterdir()] == [b"x"]
    else:
        assert_empty_or_absent(tmp_path / "out")


def test_inference_on_a_reference_grid(trained, tmp_path):
    """With reference_image both contrasts are written on that image's grid (its shape and affine exactly)."""
    root, _, item, overrides = trained
    ref = nib.load(item["contrast2"])
    _infer(root, overrides, contrast1=item["contrast1"], contrast2=item["contrast2"], reference_image=item["contrast2"],
           output_dir=str(tmp_path))
    outs = sorted(tmp_path.glob("*_sr.nii.gz"))
    assert len(outs) == 2
    for p in outs:
        img = nib.load(str(p))
        assert img.shape == ref.shape
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)


def test_hashgrid_profile_fits_a_synthetic_subject_without_inputs(tmp_path):
    root = tmp_path / "hg"
    kw = {
        "bundle_root": str(root), "data_spacing": 8.0, "slice_factor": 2.0, "epochs": 1, "batch_size": 4096,
        "mi_points": 500,
        "encoding_kwargs": {"num_levels": 4, "features_per_level": 2, "log2_table_size": 12, "base_resolution": 4,
                            "max_resolution": "@hashgrid_cells"},  # hashgrid.json's "auto"
    }
    wf = workflow([TRAIN, HASHGRID], **kw)
    wf.initialize()
    wf.run()
    wf.finalize()
    saved = torch.load(root / "models" / "model.pt", weights_only=True)
    assert "encoding.embeddings" in saved["model"]
    files = sorted((root / "data" / "synthetic_subject").glob("*acq-*.nii.gz"))
    assert len(files) == 2
    # the finest level is sized to the acquisition: one cell per finest acquired sample along each frame axis
    pair = ContrastPair(wf.parser.get_parsed_content("pair_files")[0], wf.parser.get_parsed_content("pair_files")[1])
    cells = pair.acquired_resolution()
    assert saved["network_def"]["encoding_kwargs"]["max_resolution"] == cells
    assert min(cells) < 128  # not the stand-in size: inference below must build the network from the checkpoint
    inf = workflow([INFER, HASHGRID], "infer", bundle_root=str(root), output_dir=str(tmp_path / "out"),
                   target_spacing=8.0)
    inf.initialize()
    assert inf.parser.get_parsed_content("network").encoding.resolutions[-1] == tuple(cells)
    inf.run()
    assert len(list((tmp_path / "out").glob("*_sr.nii.gz"))) == 2
