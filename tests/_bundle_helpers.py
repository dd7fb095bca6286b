"""What every bundle test checks the same way: the bundle's files, one-sentence input errors, a torchrun run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from monai_inr.errors import find_input_error

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "monai_inr" / "schema" / "metadata_schema.json"


@dataclass(frozen=True)
class BundleFiles:
    """Paths of one bundle under ``bundles/<name>``: ``files.config("train")`` is ``configs/train.json``."""

    name: str

    @property
    def root(self) -> Path:
        return REPO / "bundles" / self.name

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    @property
    def meta(self) -> str:
        return str(self.configs / "metadata.json")

    @property
    def logging(self) -> str:
        return str(self.configs / "logging.conf")

    def config(self, stem: str) -> str:
        return str(self.configs / f"{stem}.json")


def assert_one_sentence_error(error: BaseException, message: str) -> str:
    """The :class:`~monai_inr.errors.InputError` behind ``error`` is one sentence that contains ``message``."""
    sentence = str(find_input_error(error))
    assert message in sentence and "\n" not in sentence and sentence.endswith("."), sentence
    return sentence


def assert_empty_or_absent(folder: Path) -> None:
    """Nothing was half-written: ``folder`` does not exist or holds no file."""
    assert not folder.exists() or not any(folder.iterdir()), sorted(folder.iterdir())


def bundle_cli_args(overrides: dict[str, Any]) -> list[str]:
    """``--key value`` pairs as ``python -m monai.bundle run`` parses them (strings as they are, the rest as JSON)."""
    args: list[str] = []
    for k, v in overrides.items():
        args += [f"--{k}", v if isinstance(v, str) else json.dumps(v)]
    return args


def run_torchrun_training(
    files: BundleFiles, config_files: Sequence[str], overrides: dict[str, Any], cwd: Path, model: Path
) -> dict[str, torch.Tensor]:
    """Run ``run training`` under ``torch.distributed.run`` with 2 CPU (gloo) processes; return the saved state dict,
    checked to be a plain one (no DDP ``module.`` prefix)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
           "-m", "monai.bundle", "run", "training", "--config_file", json.dumps(list(config_files)),
           "--meta_file", files.meta, "--logging_file", files.logging, *bundle_cli_args(overrides)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = checkpoint_weights(model)
    assert state and not any(k.startswith("module.") for k in state)
    return state


def checkpoint_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint: a plain one, or the ``"model"`` entry of one that carries its network
    definition (``monai_inr.engines.save_network_checkpoint``)."""
    state = torch.load(path, weights_only=True)
    return state["model"] if "network_def" in state else state


def run_workflow(
    files: BundleFiles, config_files: Sequence[str], workflow_type: str, check: bool = False, **overrides: Any
) -> None:
    """Initialise, (optionally) check the properties of, run and finalise one bundle workflow in this process."""
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(config_file=list(config_files), meta_file=files.meta, logging_file=files.logging,
                        workflow_type=workflow_type, **overrides)
    wf.initialize()
    if check:
        assert wf.check_properties() in (None, [])
    wf.run()
    wf.finalize()


# ---------------------------------------------------------------------------------------------------------------------
# The tiny trained bundles: each bundle's smallest network and training run, built once per test session by the
# ``trained_bundle`` fixture (conftest.py), shared by tests/test_bundle_<name>.py and tests/test_bundle_conformance.py.
# A build writes under one folder and returns JSON (what the tests need besides the folder).
# ---------------------------------------------------------------------------------------------------------------------

ARSSR_NET = {
    "encoder_kwargs": {"features": 8, "growth": 8, "num_blocks": 2, "num_layers": 2},
    "network_def::feature_channels": 16,
    "network_def::decoder_hidden": 32,
}


def arssr_overrides(root: Path, data_dir: Path) -> dict:
    return {
        "bundle_root": str(root),
        "dataset_dir": str(data_dir),
        "data_spacing": 4.0,
        "num_train_subjects": 2,
        "num_val_subjects": 1,
        "num_test_subjects": 1,
        "epochs": 2,
        "val_interval": 1,
        "batch_size": 2,
        "patches_per_volume": 2,
        "num_coords": 300,
        "val_scales": [2.0],
        **ARSSR_NET,
    }


def _build_arssr(folder: Path) -> dict:
    files = BundleFiles("arssr")
    overrides = arssr_overrides(folder / "bundle", folder / "data")
    run_workflow(files, [files.config("train"), files.config("quick")], "train", check=True, **overrides)
    return {"overrides": overrides}


ARRFR_NET = {"encoder_kwargs": {"num_blocks": 1}, "feature_channels": 4, "decoder_hidden": 8, "attention_reduction": 2}
ARRFR_DATA = {
    "sim_preset": "tiny",
    "cube": 32,
    "num_healthy_subjects": 1,
    "num_lesion_subjects": 1,
    "simulation_overrides": {
        "recon_shape": [16, 16, 16], "recon_spacing_mm": [13.5, 13.5, 13.5], "n_spokes": 800, "n_samples": 64,
        "n_bins": 4, "phantom_spacing_mm": 6.0, "t2w_spacing_mm": [3.0, 3.0, 6.0],
    },
    "registration_overrides": {"iterations": [50, 25], "shrink_factors": [2, 1], "smoothing_sigmas": [1, 0]},
}


def arrfr_overrides(root: Path, data_dir: Path) -> dict:
    return {
        "bundle_root": str(root),
        "dataset_dir": str(data_dir),
        **ARRFR_DATA,
        **ARRFR_NET,
        "vgg_width": 2,
        "pretrain_epochs": 1,
        "pretrain_max_items": 32,
        "pretrain_batch_size": 16,
        "epochs": 1,
        "val_interval": 1,
        "save_interval": 1,
        "batch_size": 4,
        "train_max_items": 8,
        "val_max_items": 4,
        "eval_slices_per_plane": 1,
        "roi_slices_per_subject": 2,
        "eval_scales": [2.0, 3.0],
    }


def _build_arrfr(folder: Path) -> dict:
    """The simulated sodium data set (preprocessing package), VGG pre-training, then ArRFR training: two sections."""
    files = BundleFiles("arrfr")
    overrides = arrfr_overrides(folder / "bundle", folder / "sodium")
    configs = [files.config("train"), files.config("quick")]
    run_workflow(files, configs, "train", check=True, run_id="pretraining", **overrides)
    run_workflow(files, configs, "train", run_id="training", **overrides)
    return {"overrides": overrides, "data_dir": "sodium"}


DUAL_ARBNET_NET = {
    "encoder_kwargs": {"features": 4, "growth": 4, "num_blocks": 1, "num_layers": 2},
    "hidden": 4,
    "skip_hidden": 4,
    "reduction": 2,
}


def dual_arbnet_overrides(root: Path, data_dir: Path) -> dict:
    return {
        "bundle_root": str(root),
        "dataset_dir": str(data_dir),
        "data_spacing": 4.0,
        "num_train_subjects": 2,
        "num_val_subjects": 1,
        "num_test_subjects": 1,
        "epochs": 2,
        "val_interval": 1,
        "batch_size": 2,
        "iterations_per_epoch": 2,
        "lr_patch_size": 8,
        "curriculum_prelearning_epochs": 0,
        "val_scales": [2.0],
        "val_slices": 1,
        **DUAL_ARBNET_NET,
    }


def _build_dual_arbnet(folder: Path) -> dict:
    """Trained with one intra-op thread; with the single-contrast ablation (the reference branch off) beside it."""
    files = BundleFiles("dual_arbnet")
    root = folder / "bundle"
    overrides = dual_arbnet_overrides(root, folder / "data")
    configs = [files.config("train"), files.config("quick")]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_workflow(files, configs, "train", check=True, **overrides)
        run_workflow(files, configs, "train", check=True, **{**overrides, "epochs": 1, "use_reference": False,
                                                             "ckpt_dir": str(root / "models" / "single_contrast")})
    finally:
        torch.set_num_threads(n)
    return {"overrides": overrides}


MULTI_CONTRAST_INR_NET = {
    "encoding": "fourier",
    "encoding_kwargs": {"num_frequencies": 8, "scale": 4.0, "seed": 12},
    "trunk_width": 16,
    "trunk_layers": 2,
    "head_width": 8,
}


def multi_contrast_inr_fit(root: Path) -> dict:
    return {"bundle_root": str(root), "epochs": 2, "batch_size": 512, "learning_rate": 0.003, "adam_eps": 1e-8,
            "mi_points": 500, "mi_min_epochs": 1, **MULTI_CONTRAST_INR_NET}


def _build_multi_contrast_inr(folder: Path) -> dict:
    """One synthetic subject (``item``: its files) and the INR fitted to its two thick-slice contrasts."""
    from monai_inr.data.multi_contrast import build_multi_contrast_dataset, load_multi_contrast_datalist

    files = BundleFiles("multi_contrast_inr")
    datalist = build_multi_contrast_dataset(folder / "data", num_subjects=1, spacing=8.0, slice_factor=2.0, lesion=0.0)
    item = load_multi_contrast_datalist(datalist)[0]
    overrides = {**multi_contrast_inr_fit(folder / "bundle"), "contrast1": item["contrast1"],
                 "contrast2": item["contrast2"]}
    run_workflow(files, [files.config("train"), files.config("quick")], "train", check=True, **overrides)
    return {"overrides": overrides, "item": item}


NEXUS_INR_NET = {
    "feature_channels": 8,
    "encoder_kwargs": {"features": 4, "growth": 4, "num_blocks": 1, "num_layers": 2},
    "decoder_hidden": 16,
    "pe_frequencies": 4,
    "tile_size": 8,
}


def nexus_inr_overrides(root: Path, data_dir: Path) -> dict:
    return {
        "bundle_root": str(root),
        "dataset_dir": str(data_dir),
        "data_spacing": 8.0,
        "num_train_subjects": 2,
        "num_val_subjects": 1,
        "num_test_subjects": 1,
        "epochs": 2,
        "val_interval": 1,
        "batch_size": 2,
        "patches_per_volume": 2,
        "hr_patch_size": [8, 8, 8],
        "num_coords": 100,
        **NEXUS_INR_NET,
    }


def _build_nexus_inr(folder: Path) -> dict:
    files = BundleFiles("nexus_inr")
    overrides = nexus_inr_overrides(folder / "bundle", folder / "data")
    run_workflow(files, [files.config("train"), files.config("quick")], "train", check=True, **overrides)
    return {"overrides": overrides}


BUNDLE_BUILDS = {
    "arssr": _build_arssr,
    "arrfr": _build_arrfr,
    "dual_arbnet": _build_dual_arbnet,
    "multi_contrast_inr": _build_multi_contrast_inr,
    "nexus_inr": _build_nexus_inr,
}
"""Every bundle's tiny build; the tiny network overrides (``<NAME>_NET``) are what inference and export need."""

BUNDLE_NETS = {
    "arssr": ARSSR_NET,
    "arrfr": ARRFR_NET,
    "dual_arbnet": DUAL_ARBNET_NET,
    "multi_contrast_inr": MULTI_CONTRAST_INR_NET,
    "nexus_inr": NEXUS_INR_NET,
}


@dataclass(frozen=True)
class TrainedBundle:
    """One bundle trained at tiny size: its ``bundle_root``, data folder, the training overrides, and build extras."""

    name: str
    root: Path
    data_dir: Path
    overrides: dict
    extra: dict

    @property
    def files(self) -> BundleFiles:
        return BundleFiles(self.name)

    @property
    def model(self) -> Path:
        return self.root / "models" / "model.pt"


def trained_bundle_from(name: str, folder: Path, result: dict) -> TrainedBundle:
    """The :class:`TrainedBundle` of what ``BUNDLE_BUILDS[name](folder)`` returned."""
    extra = {k: v for k, v in result.items() if k not in ("overrides", "data_dir")}
    return TrainedBundle(name, folder / "bundle", folder / result.get("data_dir", "data"), result["overrides"], extra)
