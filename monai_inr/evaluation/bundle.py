"""Running a bundle's own configuration from an evaluation or a benchmark (one definition per method).

A method is defined once, by its bundle's ``configs/train.json`` (plus a profile such as ``quick.json``). Evaluations
and benchmarks never re-assemble it in Python: they run that configuration through MONAI's
:class:`~monai.bundle.ConfigWorkflow` with overrides (:func:`run_bundle`), parse its ``network_def``
(:func:`network_from_bundle`), or fit one subject with it (:func:`fit_subject`, the subject-specific multi-contrast
INR of McGinnis, Shit et al., MICCAI 2023; ``bundles/multi_contrast_inr/docs/README.md``).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from monai_inr.errors import InputError

__all__ = ["bundle_config_dir", "config_file_list", "network_from_bundle", "run_bundle", "SubjectFit", "fit_subject"]

logger = logging.getLogger(__name__)

ConfigFiles = str | os.PathLike | Sequence[str | os.PathLike]


def source_bundle(name: str) -> Path:
    """``bundles/<name>`` of the source tree this package runs from (it may not exist: an installed wheel)."""
    return Path(__file__).resolve().parents[2] / "bundles" / name


def bundle_config_dir(name: str) -> Path:
    """``bundles/<name>/configs`` of the source tree this package runs from.

    Raises:
        InputError: the folder does not exist (an installed package without the bundles).
    """
    path = source_bundle(name) / "configs"
    if not path.is_dir():
        raise InputError(f"{path}: the {name} bundle's configs are not there; pass the config files explicitly.")
    return path


def default_bundle_root(name: str, profile: str | None = None) -> str:
    """Where a bundle run reads and writes when no ``--bundle_root`` is given: the bundle's own folder, never the
    current directory of someone who runs ``python -m monai.bundle run ... --config_file bundles/<name>/...`` from the
    repository root.

    The folder is the current directory when it is a bundle folder (``configs/metadata.json`` there: the model-zoo
    convention of running from inside a downloaded bundle), else ``bundles/<name>`` of the source tree this package
    runs from when it is writable, else the current directory. With a ``profile`` (the training profile: ``paper``,
    ``quick``, ``cpu``, ...) the runs of each profile keep their own folder ``<bundle>/runs/<profile>`` (data, models,
    eval), so profiles never share or overwrite each other's datasets and models, and the weights a bundle ships in
    ``<bundle>/models`` are never replaced by a training run.
    """
    cwd = Path.cwd()
    if (cwd / "configs" / "metadata.json").is_file():
        base = cwd
    else:
        source = source_bundle(name)
        base = source if source.is_dir() and os.access(source, os.W_OK) else cwd
    return str(base if profile is None else base / "runs" / str(profile))


def config_file_list(files: ConfigFiles) -> list[str]:
    """``files`` as a list of existing config file paths.

    Raises:
        InputError: a file does not exist.
    """
    files = [files] if isinstance(files, (str, os.PathLike)) else list(files)
    out = []
    for f in files:
        if not Path(str(f)).is_file():
            raise InputError(f"{f}: bundle config file not found.")
        out.append(str(f))
    return out


def network_from_bundle(config_files: ConfigFiles, overrides: Mapping[str, Any] | None = None,
                        key: str = "network_def") -> Any:
    """The parsed ``key`` (a network by default) of a bundle's config files with ``overrides`` (``a::b`` keys)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(config_file_list(config_files))
    for k, v in (overrides or {}).items():
        parser[k] = v
    return parser.get_parsed_content(key, instantiate=True)


def run_bundle(
    config_files: ConfigFiles,
    overrides: Mapping[str, Any] | None = None,
    workflow_type: str = "train",
    run_id: str = "run",
    trainer_id: str = "train#trainer",
    extra_handlers: Sequence[Any] = (),
    time_limit: float | None = None,
) -> Any:
    """Initialise and run a bundle configuration with ``overrides``; returns the finished ``ConfigWorkflow``.

    ``extra_handlers`` (objects with ``attach(engine)``) and ``time_limit`` (seconds; ends the run at the first
    iteration past it, for benchmarks) are attached to the engine ``trainer_id`` before the run. The bundle's logging
    file is not applied (it would reconfigure the caller's logging).
    """
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(config_file=config_file_list(config_files), workflow_type=workflow_type, run_id=run_id,
                        logging_file=False, **dict(overrides or {}))
    wf.initialize()
    if extra_handlers or time_limit is not None:
        from ignite.engine import Events
        from ignite.handlers import TimeLimit

        engine = wf.parser.get_parsed_content(trainer_id)
        for h in extra_handlers:
            h.attach(engine)
        if time_limit is not None:
            engine.add_event_handler(Events.ITERATION_COMPLETED, TimeLimit(max(1, int(round(float(time_limit))))))
    wf.run()
    wf.finalize()
    return wf


@dataclass
class SubjectFit:
    """One subject fitted by the multi-contrast INR bundle (:func:`fit_subject`)."""

    network: torch.nn.Module
    subject: Any  # the bundle's ``subject`` (a ContrastPair): frame, intensity ranges, paths
    epochs: int
    seconds: float
    stopped_early: bool
    mi_history: list[float] = field(default_factory=list)
    metrics: list[dict[str, float]] = field(default_factory=list)  # the trainer's metrics after each epoch


def fit_subject(
    config_files: ConfigFiles,
    contrast1: str | os.PathLike,
    contrast2: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    work_dir: str | os.PathLike | None = None,
    extra_handlers: Sequence[Any] = (),
    time_limit: float | None = None,
) -> SubjectFit:
    """Fit one subject with the ``multi_contrast_inr`` bundle's ``train.json`` (its ``run`` section).

    The configuration (``config_files``, e.g. ``train.json`` + ``quick.json``) runs with ``contrast1``/``contrast2``
    and ``overrides`` (e.g. ``{"architecture": "vanilla"}``, ``{"contrasts": [0]}`` for a single-contrast fit,
    ``{"device": "cuda"}``) and with ``bundle_root = work_dir``, where its checkpoint and logs go (a temporary folder,
    removed afterwards, when ``work_dir`` is None). The network is returned in eval mode on its device.
    """
    from ignite.engine import Events

    from monai_inr.engines.early_stopping import MIEarlyStopping

    metrics: list[dict[str, float]] = []

    class _EpochMetrics:
        def attach(self, engine: Any) -> None:
            engine.add_event_handler(Events.EPOCH_COMPLETED, lambda e: metrics.append(dict(e.state.metrics)))

    with tempfile.TemporaryDirectory(prefix="mc_inr_fit_") as tmp:
        run = {"bundle_root": str(work_dir if work_dir is not None else tmp), **dict(overrides or {}),
               "contrast1": str(contrast1), "contrast2": str(contrast2)}
        t0 = time.perf_counter()
        wf = run_bundle(config_files, run, extra_handlers=[*extra_handlers, _EpochMetrics()], time_limit=time_limit)
        seconds = time.perf_counter() - t0
        trainer = wf.parser.get_parsed_content("train#trainer")
        handlers = wf.parser.get_parsed_content("train#handlers")
        stopper = next((h for h in handlers if isinstance(h, MIEarlyStopping)), None)
        network = wf.parser.get_parsed_content("network")
    from monai_inr.networks.utils import unwrap_network

    unwrap_network(network).eval()
    return SubjectFit(
        network=network,
        subject=wf.parser.get_parsed_content("subject"),
        epochs=int(trainer.state.epoch),
        seconds=float(seconds),
        stopped_early=bool(stopper is not None and stopper.stopped_epoch is not None),
        mi_history=list(stopper.history) if stopper is not None else [],
        metrics=metrics,
    )
