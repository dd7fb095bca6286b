"""What every bundle must pass the same way, one parametrized test per check over all five bundles: the metadata
validates offline against the schema, ``verify_net_in_out`` accepts the network, the trained checkpoint exports to
TorchScript (script mode, as the model zoo runs it) and the export gives the eager network's output at sizes and scales
other than the default, and the multi-GPU config trains under ``torchrun`` with two gloo processes.

The bundles differ only in the data of :data:`CASES`; each uses the tiny bundle its own tests use (the session's
``trained_bundle`` fixture, conftest.py), built once per session.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from _bundle_helpers import (
    BUNDLE_NETS,
    REPO,
    SCHEMA,
    BundleFiles,
    TrainedBundle,
    checkpoint_weights,
    run_torchrun_training,
)
from monai.bundle import ckpt_export, verify_metadata, verify_net_in_out

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass(frozen=True)
class Probe:
    """Call the exported network on a ``shape`` input (the case's ``sample``) with ``kwargs``; expect ``out``."""

    shape: tuple[int, ...]
    out: tuple[int, ...]
    kwargs: dict = field(default_factory=dict)


def _arssr(net: dict) -> torch.nn.Module:
    from monai_inr.networks.nets import ArSSR

    return ArSSR(encoder="RDN", feature_channels=net["network_def::feature_channels"],
                 decoder_hidden=net["network_def::decoder_hidden"], encoder_kwargs=net["encoder_kwargs"])


def _arrfr(net: dict) -> torch.nn.Module:
    from monai_inr.networks.nets import ArRFR

    return ArRFR(**net)


def _dual_arbnet(net: dict) -> torch.nn.Module:
    from monai_inr.networks.nets import DualArbNet

    return DualArbNet(**net)


def _multi_contrast_inr(net: dict) -> torch.nn.Module:
    from monai_inr.networks.nets import MultiContrastINR

    return MultiContrastINR(**{k: v for k, v in net.items() if k != "encoding"})


def _nexus_inr(net: dict) -> torch.nn.Module:
    from monai_inr.networks.nets import NexusINR

    keys = ("feature_channels", "encoder_kwargs", "decoder_hidden", "pe_frequencies")
    return NexusINR(**{k: net[k] for k in keys})


@dataclass(frozen=True)
class Case:
    """How one bundle differs in the checks.

    ``net_configs``: the configs ``verify_net_in_out`` and ``ckpt_export`` read (``network_def``, with the tiny network
    overrides ``_bundle_helpers.BUNDLE_NETS[name]``), ``verify_any``: the ``any`` size it probes with; ``reference``:
    the eager network (from the tiny overrides) the export must reproduce within ``atol``/``rtol`` on every probe;
    ``torchrun_configs`` / ``torchrun``: the multi-GPU run's configs and its overrides on top of the training ones
    (string values formatted with ``root`` = the trained bundle root and ``tmp`` = the test's temporary folder; the run
    writes to ``{tmp}/ddp``); ``state_keys``: keys the state dict it saves must hold; ``key_in_ckpt``: where the
    weights are inside the trained checkpoint (``"model"`` for a checkpoint that carries its network definition).
    """

    name: str
    reference: Callable[[dict], torch.nn.Module]
    probes: tuple[Probe, ...]
    sample: Callable[[tuple[int, ...]], torch.Tensor] = torch.rand
    atol: float = 1e-5
    rtol: float = 1e-5
    verify_any: int = 1
    net_configs: tuple[str, ...] = ("inference", "quick")
    torchrun_configs: tuple[str, ...] = ("train", "quick", "multi_gpu_train")
    torchrun: dict = field(default_factory=dict)
    state_keys: tuple[str, ...] = ()
    key_in_ckpt: str = ""

    @property
    def files(self) -> BundleFiles:
        return BundleFiles(self.name)


CASES = (
    Case(
        "arssr", _arssr,
        probes=(Probe((1, 1, 8, 8, 8), (1, 1, 16, 16, 16)),
                Probe((1, 1, 6, 5, 4), (1, 1, 12, 15, 6), {"scale": [2.0, 3.0, 1.5]})),
        # one validation item for two ranks: the sampler pads it so every rank validates (the same item)
        torchrun={"epochs": 1, "val_scales": [2.0]},
    ),
    Case(
        "arrfr", _arrfr,
        probes=(Probe((1, 2, 16, 16), (1, 1, 32, 32)), Probe((1, 2, 12, 10), (1, 1, 30, 25), {"scale": 2.5})),
        torchrun={"vgg_ckpt": "{root}/models/vgg.pt", "epochs": 1, "train_max_items": 4, "batch_size": 2,
                  "val_max_items": 1},
    ),
    Case(
        "dual_arbnet", _dual_arbnet,
        probes=(Probe((1, 1, 8, 8), (1, 1, 16, 16)), Probe((1, 1, 10, 6), (1, 1, 25, 15), {"scale": 2.5})),
        torchrun={"epochs": 1, "val_scales": [2.0]},
    ),
    Case(
        "multi_contrast_inr", _multi_contrast_inr,
        # channel-first coordinates in [-1, 1] of any spatial layout -> both contrasts at those points
        probes=(Probe((1, 3, 5), (1, 2, 5)), Probe((2, 3, 4, 3), (2, 2, 4, 3))),
        sample=lambda shape: torch.rand(shape) * 2 - 1,
        verify_any=8,
        torchrun={"epochs": 1},
        state_keys=("frame_affine",),
        key_in_ckpt="model",  # the fit's checkpoint carries its network (a hash grid sized to the acquisition)
    ),
    Case(
        "nexus_inr", _nexus_inr,
        # both z-scored modalities on one grid (a multiple of the 8-voxel tile) -> both predictions on it
        probes=(Probe((1, 2, 8, 8, 8), (1, 2, 8, 8, 8)), Probe((1, 2, 8, 16, 8), (1, 2, 8, 16, 8))),
        sample=torch.randn,
        atol=1e-3,
        rtol=1e-3,
        # the tiny bundle's one validation subject for two ranks (padded: both ranks validate it)
        torchrun={"epochs": 1},
    ),
)
PARAMS = [pytest.param(c, id=c.name, marks=pytest.mark.xdist_group(f"{c.name}_bundle")) for c in CASES]


def test_every_bundle_has_a_case():
    names = {p.parents[1].name for p in (REPO / "bundles").glob("*/configs/metadata.json")}
    assert names == {c.name for c in CASES} == set(BUNDLE_NETS)


@pytest.fixture
def trained(request, trained_bundle) -> TrainedBundle:
    return trained_bundle(request.node.callspec.params["case"].name)


def _targets(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        return ([obj["_target_"]] if isinstance(obj.get("_target_"), str) else []) + [
            t for v in obj.values() for t in _targets(v)]
    return [t for v in obj for t in _targets(v)] if isinstance(obj, list) else []


ATOMIC_CHECKPOINTS = ("arssr", "dual_arbnet", "multi_contrast_inr", "nexus_inr", "arrfr")


@pytest.mark.parametrize("name", ATOMIC_CHECKPOINTS)
def test_training_saves_atomic_finite_checkpoints(name):
    """Every trainer saves through TrainingCheckpoint (atomic, resumable, never a non-finite or half-fitted model
    under the final name) and stops at the first non-finite loss; MONAI's in-place CheckpointSaver is gone."""
    import json

    targets = _targets(json.loads((REPO / "bundles" / name / "configs" / "train.json").read_text(encoding="utf-8")))
    assert "monai_inr.engines.checkpoint.TrainingCheckpoint" in targets
    assert "monai_inr.engines.checkpoint.NonFiniteLossGuard" in targets
    assert "CheckpointSaver" not in targets


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_metadata_validates_offline(case):
    verify_metadata(meta_file=case.files.meta, filepath=str(SCHEMA))


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_metadata_holds_measured_metrics_and_pins_the_package(case):
    """No placeholder zeros: every metric is a measured number whose key names the data and profile it was measured
    on; the metadata pins the monai_inr version its configs were written for."""
    import json
    import math

    import monai_inr

    meta = json.loads(Path(case.files.meta).read_text(encoding="utf-8"))
    metrics = meta["eval_metrics"]
    assert metrics and all(isinstance(v, (int, float)) and math.isfinite(v) and v != 0 for v in metrics.values())
    assert all(("realistic" in k or "colin27" in k) and len(k.split("_")) >= 4 for k in metrics), metrics
    assert meta["required_packages_version"]["monai_inr"] == monai_inr.__version__


ZOO_SECTIONS = ("Overview", "Data", "Training configuration", "Input", "Output", "Performance", "Commands",
                "Limitations", "References", "License")


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_docs_follow_the_model_zoo_readme_sections(case):
    text = (case.files.root / "docs" / "README.md").read_text(encoding="utf-8")
    headings = [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]
    assert tuple(headings) == ZOO_SECTIONS, headings


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_runs_write_under_the_bundle_folder_one_folder_per_profile(name, tmp_path, monkeypatch):
    """The mission command (``python -m monai.bundle run training --config_file bundles/<name>/configs/train.json``
    from the repository root) reads and writes under ``bundles/<name>/runs/<profile>``, never in the current folder
    and never over shipped weights; inside a bundle folder (the model-zoo way) the bundle folder is the root."""
    import shutil

    from monai.bundle import ConfigParser

    files = BundleFiles(name)

    def root(*configs: str, cwd: Path) -> Path:
        monkeypatch.chdir(cwd)
        parser = ConfigParser()
        parser.read_config([str(files.configs / f"{c}.json") for c in configs])
        return Path(parser.get_parsed_content("bundle_root"))

    quick = "quick"
    assert root("train", cwd=REPO) == files.root / "runs" / "paper"
    assert root("train", quick, cwd=tmp_path) == files.root / "runs" / "quick"
    if name == "arssr":  # inference finds the shipped weights; the CPU profile trains into its own folder
        assert root("inference", cwd=tmp_path) == files.root
        assert root("train", "cpu", cwd=REPO) == files.root / "runs" / "cpu"
    else:  # inference finds what the same profile's training wrote
        assert root("inference", quick, cwd=tmp_path) == files.root / "runs" / "quick"
    copy = tmp_path / "downloaded" / name
    shutil.copytree(files.configs, copy / "configs")
    assert root("train", cwd=copy) == copy / "runs" / "paper"


@pytest.mark.parametrize("case", PARAMS)
def test_verify_net_in_out_and_ckpt_export(case, trained, tmp_path):
    files, net = case.files, BUNDLE_NETS[case.name]
    configs = [files.config(c) for c in case.net_configs]
    verify_net_in_out(net_id="network_def", meta_file=files.meta, config_file=configs, device="cpu", n=1,
                      any=case.verify_any, **net)
    ts = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def", filepath=str(ts), ckpt_file=str(trained.model), meta_file=files.meta,
        config_file=configs, bundle_root=str(trained.root), key_in_ckpt=case.key_in_ckpt,
        **net,  # script mode, as the model zoo runs it
    )
    exported = torch.jit.load(str(ts))
    reference = case.reference(net)
    reference.load_state_dict(checkpoint_weights(trained.model))
    reference.eval()
    for probe in case.probes:
        x = case.sample(probe.shape)
        out = exported(x, **probe.kwargs)
        assert out.shape == probe.out, (probe, tuple(out.shape))
        with torch.no_grad():
            expected = reference(x, **probe.kwargs)
        torch.testing.assert_close(out, expected, atol=case.atol, rtol=case.rtol)


def _formatted(value: Any, **names: str) -> Any:
    return value.format(**names) if isinstance(value, str) else value


@pytest.mark.slow
@pytest.mark.parametrize("case", PARAMS)
def test_multi_gpu_config_runs_under_torchrun_with_gloo(case, trained, tmp_path):
    files = case.files
    root = tmp_path / "ddp"
    root.mkdir()
    extra = {k: _formatted(v, root=str(trained.root), tmp=str(tmp_path)) for k, v in case.torchrun.items()}
    args = {**trained.overrides, "bundle_root": str(root), **extra}
    state = run_torchrun_training(files, [files.config(c) for c in case.torchrun_configs], args, cwd=tmp_path,
                                  model=root / "models" / "model.pt")
    assert state
    for key in case.state_keys:
        assert key in state, sorted(state)
