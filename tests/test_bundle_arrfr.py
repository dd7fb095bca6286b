"""The ArRFR bundle end to end at tiny size: simulated dataset through the preprocessing package, VGG pre-training and
ArRFR training as separate bundle sections, evaluation (tables, ROI regression, figures), slice-wise inference in every
plane and on non-square 2D slices with physical-geometry checks, bad input (metadata, model-zoo export and torchrun:
test_bundle_conformance.py)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from _bundle_helpers import ARRFR_NET, REPO, BundleFiles, assert_empty_or_absent, assert_one_sentence_error
from monai.bundle import ConfigWorkflow

from monai_inr import coords
from monai_inr.errors import find_input_error
from monai_inr.networks.nets import ArRFR

pytestmark = pytest.mark.xdist_group("arrfr_bundle")

FILES = BundleFiles("arrfr")
TRAIN, EVALUATE, INFER, QUICK = (FILES.config(s) for s in ("train", "evaluate", "inference", "quick"))
META, LOGGING = FILES.meta, FILES.logging

NET = ARRFR_NET


def _workflow(files, workflow_type, run_id="run", **overrides):
    return ConfigWorkflow(config_file=files, meta_file=META, logging_file=LOGGING, workflow_type=workflow_type,
                          run_id=run_id, **overrides)


def _run(wf):
    wf.initialize()
    wf.run()
    wf.finalize()


@pytest.fixture
def trained(trained_bundle):
    """The dataset and the trained bundle, built once per test session (``trained_bundle``, conftest.py), also under
    pytest-xdist."""
    t = trained_bundle("arrfr")
    return t.root, t.data_dir, t.overrides


def _test_volumes(data_dir: Path) -> dict:
    from preprocessing.dataset import volume_entries

    (item,) = volume_entries(data_dir / "derivatives" / "datalist.json", "test")
    return item


def _cropped(item: dict, tmp_path: Path, axis: int = 2, start: int = 13, count: int = 6) -> dict:
    """The test subject's sodium and T2w cut to ``count`` slices along ``axis`` (affine origin moved accordingly), to
    keep the slice-by-slice inference tests fast."""
    out = {}
    for key in ("sodium", "t2w"):
        img = nib.load(item[key])
        index = [slice(None)] * 3
        index[axis] = slice(start, start + count)
        aff = img.affine.copy()
        shift = np.zeros(3)
        shift[axis] = start
        aff[:3, 3] = coords.voxel_to_world(shift, img.affine)
        path = tmp_path / f"{key}_crop.nii.gz"
        nib.save(nib.Nifti1Image(img.get_fdata()[tuple(index)].astype(np.float32), aff), str(path))
        out[key] = str(path)
    return out


def _infer(root, overrides, **kw):
    net = {k: v for k, v in overrides.items() if k in NET}
    _run(_workflow([INFER, QUICK], "infer", **{"bundle_root": str(root), **net, **kw}))


def test_dataset_comes_from_the_preprocessing_package(trained):
    _, data_dir, _ = trained
    dl = json.loads((data_dir / "derivatives" / "datalist.json").read_text(encoding="utf-8"))
    assert dl["subjects"] == {"training": ["sub-01"], "validation": [], "test": ["sub-02"]}
    entry = dl["training"][0]
    assert np.load(data_dir / "derivatives" / entry["sodium"]).shape == (32, 32)
    item = _test_volumes(data_dir)
    assert item["lesion"] and {"truth", "labels", "t2w_truth"} <= set(item)
    assert nib.load(item["truth"]).shape == nib.load(item["sodium"]).shape == (32, 32, 32)
    assert np.allclose(nib.load(item["truth"]).affine, nib.load(item["sodium"]).affine)


def test_sections_write_plain_state_dicts(trained):
    root, _, _ = trained
    vgg = torch.load(root / "models" / "vgg.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in vgg.values()) and "features.0.weight" in vgg
    for name in ("model.pt", "model_final.pt"):
        state = torch.load(root / "models" / name, weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
        assert any(k.startswith("encoder_sodium.") for k in state) and any(k.startswith("decoder.") for k in state)
    assert list((root / "models").glob("periodic*.pt"))
    assert (root / "eval" / "tensorboard").is_dir() and (root / "eval" / "tensorboard_vgg").is_dir()
    assert not (REPO / "models").exists() and not (REPO / "eval").exists()


def test_training_without_a_vgg_checkpoint_fails_with_one_sentence(trained, tmp_path):
    _, data_dir, overrides = trained
    with pytest.raises(Exception) as err:
        _run(_workflow([TRAIN, QUICK], "train", "training", **{**overrides, "bundle_root": str(tmp_path)}))
    sentence = str(find_input_error(err.value))
    assert "VGG checkpoint not found" in sentence and "run pretraining" in sentence and "\n" not in sentence
    assert not list((tmp_path / "models").glob("*.pt"))


def _plain_vgg_file(path: Path, width: int) -> Path:
    """A torchvision-style ``vgg16().state_dict()`` (RGB first convolution, 224x224 head) at ``width``: stands in for
    the authors' ``vgg.pth``."""
    from monai_inr.networks.vgg import VGG16

    state = {k: v for k, v in VGG16(in_channels=3, width=width).state_dict().items() if k.startswith("features.")}
    state["classifier.0.weight"] = torch.zeros(16, 8 * width * 7 * 7)
    torch.save(state, path)
    return path


def test_training_with_mismatched_vgg_weights_fails_before_any_work(trained, tmp_path):
    _, _, overrides = trained
    bad = _plain_vgg_file(tmp_path / "vgg.pth", width=4)  # the bundle's VGG has width 2
    wf = _workflow([TRAIN, QUICK], "train", "run", **{**overrides, "bundle_root": str(tmp_path / "b"),
                                                      "vgg_weights": str(bad), "vgg_batch_norm": False})
    with pytest.raises(Exception) as err:
        wf.initialize()
    sentence = assert_one_sentence_error(err.value, "set vgg_width 4")
    assert str(bad) in sentence
    assert not list((tmp_path / "b" / "models").glob("*.pt")) and not (tmp_path / "b" / "eval").exists()


def test_run_with_vgg_weights_loads_them_and_skips_the_pretraining(trained, tmp_path):
    _, _, overrides = trained
    weights = _plain_vgg_file(tmp_path / "vgg.pth", width=2)
    root = tmp_path / "b"
    wf = _workflow([TRAIN, QUICK], "train", "run", **{**overrides, "bundle_root": str(root), "vgg_weights": str(weights),
                                                      "vgg_batch_norm": False, "vgg_standardize": False})
    _run(wf)
    vgg = wf.parser.get_parsed_content("vgg")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in vgg.modules()) and not vgg.standardize_input
    rgb = torch.load(weights, weights_only=True)
    assert torch.equal(vgg.features[0].weight.cpu(), rgb["features.0.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(vgg.features[28].weight.cpu(), rgb["features.28.weight"])
    assert (root / "models" / "model.pt").is_file() and not (root / "models" / "vgg.pt").exists()


@pytest.mark.parametrize("scales, mode, message", [([1, 2, 8], "cubic", "outside the supported range [1, 4]"),
                                                   ([1, 2.5], "decimate", "integer factors")])
def test_training_factors_outside_the_trained_range_fail(trained, tmp_path, scales, mode, message):
    _, data_dir, overrides = trained
    wf = _workflow([TRAIN, QUICK], "train", "training",
                   **{**overrides, "bundle_root": str(tmp_path), "train_scales": scales, "downsample_mode": mode})
    with pytest.raises(Exception) as err:
        wf.initialize()
    assert message in str(find_input_error(err.value))


def test_evaluation_writes_tables_roi_regression_and_figures(trained):
    root, _, overrides = trained
    _run(_workflow([TRAIN, EVALUATE, QUICK], "eval", **overrides))
    out = root / "eval"
    noref = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert {r["method"] for r in noref["records"]} == {"ArRFR", "cubic", "linear"}
    assert {r["scale"] for r in noref["records"]} == {2.0, 3.0}
    cubic = [r for r in noref["records"] if r["method"] == "cubic"]
    assert all(np.isfinite([r["psi"], r["lpc_si"]]).all() for r in cubic)
    from monai_inr.metrics import brisque_available

    if brisque_available():  # the test extra installs it: a real score, never a silent NaN
        assert "brisque" in noref["metric_keys"] and all(np.isfinite(r["brisque"]) for r in cubic)
    else:
        assert "brisque" not in noref["metric_keys"]
        assert noref["metadata"]["unavailable_metrics"]["brisque"].startswith("BRISQUE unavailable: ")
    ref = json.loads((out / "reference_metrics.json").read_text(encoding="utf-8"))
    assert {(r["scale"], r["method"]) for r in ref["records"]} >= {(1.0, "input"), (1.0, "ArRFR"), (2.0, "cubic"),
                                                                   (2.0, "linear"), (3.0, "ArRFR")}
    assert all(np.isfinite(r["psnr_t2w"]) for r in ref["records"] if r["method"] != "ArRFR")
    # the restacked whole volumes: one 3D record per subject, scale and method; the x1 input scores its own T2w PSNR
    stacked = json.loads((out / "restacked_metrics.json").read_text(encoding="utf-8"))["records"]
    assert {(r["scale"], r["method"]) for r in stacked} == {(1.0, "input"), (1.0, "ArRFR"), (2.0, "ArRFR"),
                                                            (2.0, "cubic"), (2.0, "linear"), (3.0, "ArRFR"),
                                                            (3.0, "cubic"), (3.0, "linear")}
    assert all(r["slices"] == 1 and np.isfinite(r["psnr_truth"]) for r in stacked)
    assert "Restacked volumes" in (out / "results.md").read_text(encoding="utf-8")
    roi = json.loads((out / "roi_analysis.json").read_text(encoding="utf-8"))
    assert {"degraded_vs_input", "output_vs_input"} <= set(roi) and roi["points"]
    assert {p["roi"] for p in roi["points"]} <= {"CSF", "tumour"}
    for fig in ("profile_csf.png", "lesion_montage.png", "roi_regression.png"):
        assert (out / "figures" / fig).stat().st_size > 1000
    assert "ROI regression" in (out / "results.md").read_text(encoding="utf-8")
    assert len(list(out.glob("metrics_scale-*.csv"))) == 2


def _edges_match(src_shape, src_aff, out_shape, out_aff):
    for a, b in ((np.full(3, -0.5), np.full(3, -0.5)), (np.asarray(src_shape) - 0.5, np.asarray(out_shape) - 0.5)):
        assert np.allclose(coords.voxel_to_world(a, src_aff), coords.voxel_to_world(b, out_aff), atol=1e-4)


def _net(root):
    net = ArRFR(**NET)
    net.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))
    return net.eval()


@pytest.mark.parametrize("plane", ["sagittal", "coronal", "axial"])
def test_volume_inference_in_every_plane(trained, tmp_path, plane):
    root, data_dir, overrides = trained
    axis = {"sagittal": 0, "coronal": 1, "axial": 2}[plane]  # the prepared cubes are RAS
    item = _cropped(_test_volumes(data_dir), tmp_path, axis)
    _infer(root, overrides, input_image=item["sodium"], reference_image=item["t2w"], scale=2.0, plane=plane,
           output_dir=str(tmp_path / "out"))
    (out,) = list((tmp_path / "out").glob("*_fused.nii.gz"))
    src, res = nib.load(item["sodium"]), nib.load(str(out))
    assert nib.aff2axcodes(src.affine) == ("R", "A", "S")
    expect = tuple(n if d == axis else 2 * n for d, n in enumerate(src.shape))
    assert res.shape == expect
    _edges_match(src.shape, src.affine, res.shape, res.affine)
    # the written slice is the network output on the min-max normalised slices, mapped back to the sodium range
    na, t2 = src.get_fdata().astype(np.float32), nib.load(item["t2w"]).get_fdata().astype(np.float32)
    k = 3
    norm = lambda v: (v - v.min()) / (v.max() - v.min())  # noqa: E731
    a = torch.from_numpy(np.take(norm(na), k, axis))[None, None]
    b = torch.from_numpy(np.take(norm(t2), k, axis))[None, None]
    with torch.no_grad():
        pred = _net(root)(a, b, output_shape=tuple(expect[d] for d in range(3) if d != axis))[0, 0].numpy()
    lo, hi = float(na.min()), float(na.max())
    assert np.allclose(np.take(res.get_fdata(), k, axis), pred * (hi - lo) + lo, rtol=1e-4, atol=1e-4 * (hi - lo))


@pytest.mark.parametrize("layout", ["2d", "3d_single_slice"])
def test_non_square_slice_inference(trained, tmp_path, layout):
    root, data_dir, overrides = trained
    item = _test_volumes(data_dir)
    src = nib.load(item["sodium"])
    sl = (slice(4, 24), slice(2, 30), 16)
    na = src.get_fdata()[sl].astype(np.float32)
    t2 = nib.load(item["t2w"]).get_fdata()[sl].astype(np.float32)
    aff = src.affine.copy()
    aff[:3, 3] = coords.voxel_to_world(np.array([4.0, 2.0, 16.0]), src.affine)
    if layout == "3d_single_slice":
        na, t2 = na[..., None], t2[..., None]
    for name, arr in (("na.nii.gz", na), ("t2.nii.gz", t2)):
        nib.save(nib.Nifti1Image(arr, aff), str(tmp_path / name))
    _infer(root, overrides, input_image=str(tmp_path / "na.nii.gz"), reference_image=str(tmp_path / "t2.nii.gz"),
           scale=2.5, output_dir=str(tmp_path / "out"))
    (out,) = list((tmp_path / "out").glob("*.nii.gz"))
    res = nib.load(str(out))
    assert res.shape[:2] == (50, 70) and (res.ndim == 2 or res.shape[2] == 1)
    _edges_match((20, 28, 1), aff, (50, 70, 1), res.affine)


def _bad_case(case, tmp_path, item):
    na_img, t2_img = nib.load(item["sodium"]), nib.load(item["t2w"])
    na, t2 = na_img.get_fdata().astype(np.float32), t2_img.get_fdata().astype(np.float32)
    kw = {"input_image": item["sodium"], "reference_image": item["t2w"], "scale": 2.0}
    bad_na, bad_t2 = tmp_path / "bad_na.nii.gz", tmp_path / "bad_t2.nii.gz"
    if case == "shape":
        nib.save(nib.Nifti1Image(t2[:, :, :30], t2_img.affine), str(bad_t2))
        kw["reference_image"] = str(bad_t2)
    elif case == "affine":
        shifted = t2_img.affine.copy()
        shifted[:3, 3] += [3.0, 0.0, 0.0]
        nib.save(nib.Nifti1Image(t2, shifted), str(bad_t2))
        kw["reference_image"] = str(bad_t2)
    elif case == "complex":
        nib.save(nib.Nifti1Image((na * np.exp(0.3j)).astype(np.complex64), na_img.affine), str(bad_na))
        kw["input_image"] = str(bad_na)
    elif case == "complex_channels":
        nib.save(nib.Nifti1Image(np.stack([na, 0.5 * na], -1), na_img.affine), str(bad_na))
        kw["input_image"] = str(bad_na)
    elif case == "missing":
        kw["input_image"] = str(tmp_path / "missing.nii.gz")
    elif case == "constant":
        nib.save(nib.Nifti1Image(np.ones_like(na), na_img.affine), str(bad_na))
        kw["input_image"] = str(bad_na)
    elif case == "downscale":
        kw["scale"] = 0.5
    elif case == "no_ckpt":
        kw["ckpt_path"] = str(tmp_path / "nothing.pt")
    return kw


@pytest.mark.parametrize(
    "case, message",
    [
        ("shape", "ArRFR needs both on one grid"),
        ("affine", "does not match the sodium affine"),
        ("complex", "is complex (complex dtype complex64)"),
        ("complex_channels", "is complex (2 channels (real, imaginary))"),
        ("missing", "file not found"),
        ("constant", "constant"),
        ("downscale", "does not downsample"),
        ("no_ckpt", "checkpoint not found"),
    ],
)
def test_bad_input_fails_with_one_sentence_and_writes_nothing(trained, tmp_path, case, message):
    root, data_dir, overrides = trained
    kw = _bad_case(case, tmp_path, _test_volumes(data_dir))
    with pytest.raises(Exception) as err:
        _infer(root, overrides, output_dir=str(tmp_path / "out"), **kw)
    assert_one_sentence_error(err.value, message)
    assert_empty_or_absent(tmp_path / "out")


def test_complex_sodium_can_be_converted_explicitly(trained, tmp_path):
    root, data_dir, overrides = trained
    item = _cropped(_test_volumes(data_dir), tmp_path, count=3)
    kw = _bad_case("complex", tmp_path, item)
    _infer(root, overrides, output_dir=str(tmp_path / "a"), complex_sodium="magnitude", **kw)
    _infer(root, overrides, output_dir=str(tmp_path / "b"), **{**kw, "input_image": item["sodium"]})
    (a,) = list((tmp_path / "a").glob("*.nii.gz"))
    (b,) = list((tmp_path / "b").glob("*.nii.gz"))
    assert np.allclose(nib.load(str(a)).get_fdata(), nib.load(str(b)).get_fdata(), rtol=1e-4, atol=1e-3)
