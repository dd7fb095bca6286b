"""The ArSSR bundle end to end at tiny size: train, evaluate, infer, bad input (metadata, model-zoo export and torchrun:
test_bundle_conformance.py)."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow

from _bundle_helpers import ARSSR_NET, REPO, BundleFiles, assert_empty_or_absent, assert_one_sentence_error
from monai_inr import coords
from monai_inr.inferers import ImplicitInferer
from monai_inr.networks.nets import ArSSR

pytestmark = pytest.mark.xdist_group("arssr_bundle")

FILES = BundleFiles("arssr")
TRAIN, EVALUATE, INFER, QUICK = (FILES.config(s) for s in ("train", "evaluate", "inference", "quick"))
META, LOGGING = FILES.meta, FILES.logging

TINY_NET = ARSSR_NET


@pytest.fixture
def trained(trained_bundle):
    """The tiny trained bundle, built once per session (``trained_bundle``, conftest.py)."""
    t = trained_bundle("arssr")
    return t.root, t.data_dir, t.overrides


def test_training_writes_a_plain_state_dict(trained):
    root, _, _ = trained
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert any(k.startswith("encoder.") for k in state) and any(k.startswith("decoder.") for k in state)
    assert (root / "eval" / "tensorboard").is_dir()
    assert not (REPO / "models").exists() and not (REPO / "eval").exists()


def test_evaluation_writes_metrics_per_scale_and_method(trained):
    root, data_dir, overrides = trained
    wf = ConfigWorkflow(
        config_file=[TRAIN, EVALUATE, QUICK], meta_file=META, logging_file=LOGGING, workflow_type="eval",
        **{**overrides, "eval_scales": [2.0, 3.0]},
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    metrics = json.loads((root / "eval" / "metrics.json").read_text(encoding="utf-8"))
    methods = {r["method"] for r in metrics["records"]}
    assert methods == {"ArSSR", "cubic", "trilinear"}
    assert {r["scale"] for r in metrics["records"]} == {2.0, 3.0}
    for r in metrics["records"]:
        assert np.isfinite([r["psnr"], r["psnr_mask"], r["ssim"], r["ssim_mask"]]).all()
    csvs = sorted(p.name for p in (root / "eval").glob("*.csv"))
    assert len(csvs) == 2


def _test_image(data_dir: Path) -> Path:
    datalist = json.loads((data_dir / "datalist.json").read_text(encoding="utf-8"))
    path = Path(datalist["test"][0]["t1w"])
    return path if path.is_absolute() else data_dir / path


def _infer(root, overrides, **kw):
    wf = ConfigWorkflow(
        config_file=[INFER, QUICK], meta_file=META, logging_file=LOGGING, workflow_type="infer",
        **{"bundle_root": str(root), **{k: v for k, v in overrides.items() if k.startswith(("encoder", "network_def"))}, **kw},
    )
    wf.initialize()
    wf.run()
    wf.finalize()


def test_inference_writes_sr_volume_with_physical_geometry(trained, tmp_path):
    root, data_dir, overrides = trained
    src = _test_image(data_dir)
    _infer(root, overrides, input_image=str(src), scale=2.5, output_dir=str(tmp_path))
    (out,) = list(tmp_path.glob("*_sr.nii.gz"))
    lr_img, sr_img = nib.load(str(src)), nib.load(str(out))
    assert sr_img.shape == tuple(int(round(n * 2.5)) for n in lr_img.shape)
    # same physical FOV: the outer voxel edges coincide in world coordinates
    for edge_in, edge_out in [(np.full(3, -0.5), np.full(3, -0.5)), (np.asarray(lr_img.shape) - 0.5, np.asarray(sr_img.shape) - 0.5)]:
        np.testing.assert_allclose(
            coords.voxel_to_world(edge_in, lr_img.affine), coords.voxel_to_world(edge_out, sr_img.affine), atol=1e-4
        )
    # the written intensities are the network's [0, 1] prediction mapped back to the input's range
    lr = lr_img.get_fdata().astype(np.float32)
    lo, hi = float(lr.min()), float(lr.max())
    net = ArSSR(encoder="RDN", feature_channels=16, decoder_hidden=32, encoder_kwargs=TINY_NET["encoder_kwargs"])
    net.load_state_dict(torch.load(root / "models" / "model.pt", weights_only=True))
    net.eval()
    # the bundle's precision ("auto": bf16 where native, see inferers.precision), so both runs take the same path
    pred = ImplicitInferer(scale=2.5, amp_bf16="auto")(torch.from_numpy((lr - lo) / (hi - lo))[None, None], net)
    np.testing.assert_allclose(sr_img.get_fdata(), pred[0, 0].numpy() * (hi - lo) + lo, rtol=1e-4, atol=1e-4 * (hi - lo))


def test_inference_target_spacing_and_file_list(trained, tmp_path):
    root, data_dir, overrides = trained
    src = _test_image(data_dir)
    second = tmp_path / "in" / "second.nii.gz"
    second.parent.mkdir()
    img = nib.load(str(src))
    nib.save(nib.Nifti1Image(img.get_fdata()[::-1].copy(), img.affine), str(second))
    _infer(root, overrides, input_image=[str(src), str(second)], target_spacing=[2.0, 2.0, 3.0], output_dir=str(tmp_path / "out"))
    outs = sorted((tmp_path / "out").glob("*.nii.gz"))
    assert len(outs) == 2
    for o in outs:
        np.testing.assert_allclose(coords.spacing_from_affine(nib.load(str(o)).affine), [2.0, 2.0, 3.0], rtol=0.06)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "file not found"),
        ("2d", "expected a 3D image but got 2D"),
        ("4d", "expected a 3D image but got 4D"),
        ("nan", "NaN or Inf"),
        ("constant", "constant"),
        ("scale0", "scale must be positive"),
        ("huge", "memory budget"),
        ("other_net", "checkpoint of another network"),
        ("no_ckpt", "checkpoint not found"),
    ],
)
def test_bad_input_fails_with_one_sentence_and_writes_nothing(trained, tmp_path, case, message):
    root, data_dir, overrides = trained
    src = _test_image(data_dir)
    good = nib.load(str(src))
    kw = {"input_image": str(src), "scale": 2.0, "output_dir": str(tmp_path / "out")}
    bad = tmp_path / "bad.nii.gz"
    if case == "missing":
        kw["input_image"] = str(tmp_path / "missing.nii.gz")
    elif case in ("2d", "4d", "nan", "constant"):
        data = {
            "2d": np.random.rand(16, 16),
            "4d": np.random.rand(8, 8, 8, 3),
            "nan": np.where(np.random.rand(8, 8, 8) > 0.5, np.nan, 1.0),
            "constant": np.ones((8, 8, 8)),
        }[case]
        nib.save(nib.Nifti1Image(data.astype(np.float32), good.affine), str(bad))
        kw["input_image"] = str(bad)
    elif case == "scale0":
        kw["scale"] = 0.0
    elif case == "huge":
        kw["scale"] = 400.0
    elif case == "other_net":
        other = tmp_path / "other.pt"
        torch.save(torch.nn.Linear(3, 3).state_dict(), other)
        kw["ckpt_path"] = str(other)
    elif case == "no_ckpt":
        kw["ckpt_path"] = str(tmp_path / "nothing.pt")
    with pytest.raises(Exception) as err:
        _infer(root, overrides, **kw)
    assert_one_sentence_error(err.value, message)
    assert_empty_or_absent(tmp_path / "out")


def test_training_is_tracked_in_mlflow(trained, tmp_path):
    """``--tracking mlflow`` (MONAI's bundle tracking, the ``mlflow`` extra): the run's parameters and per-epoch loss
    and validation metrics land in the SQLite tracking store under ``<output_dir>/mlruns.db``."""
    mlflow = pytest.importorskip("mlflow")
    _, data_dir, overrides = trained
    out = tmp_path / "eval"
    wf = ConfigWorkflow(config_file=[TRAIN, QUICK], meta_file=META, logging_file=LOGGING, workflow_type="train",
                        tracking="mlflow", **{**overrides, "bundle_root": str(tmp_path), "output_dir": str(out),
                                              "epochs": 1})
    wf.initialize()
    wf.run()
    wf.finalize()
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    (run,) = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert {"train_loss", "val_psnr"} <= set(run.data.metrics) and "max_epochs" in run.data.params
    assert np.isfinite(run.data.metrics["val_psnr"])
