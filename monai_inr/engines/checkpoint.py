"""Checkpoints that are never lost: atomic writes, a resumable training state, and no non-finite model ever saved.

MONAI's ``CheckpointSaver`` writes in place (ignite ``DiskSaver(atomic=False)``): a new best first unlinks the old
``model.pt`` and then writes the new one, so a kill during the write loses both, and a restarted training begins at
epoch 0 and overwrites a better model from the earlier run. :class:`TrainingCheckpoint` replaces it in the bundles'
training configs:

* every file is written to a temporary sibling, flushed and fsync'ed, then renamed over the final name
  (:func:`save_atomic`), so a reader sees either the old or the new complete file; temporaries of dead processes are
  removed on the next run (:func:`remove_stale_partials`);
* after each validation it saves the best model (``model.pt``, a plain state dict that loads with
  ``weights_only=True``) when the key metric improves, and the full training state (``training_state.pt``: network,
  optimiser, scheduler, epoch, iteration, best metric) every time;
* a restarted run resumes from ``training_state.pt`` by default; with ``resume=False`` it starts at epoch 0 and the
  previous run's files are kept under a timestamped name (``model.<time>.pt``) instead of being overwritten;
* a network with a NaN or Inf weight is never written (the run stops with one sentence instead), and
  :class:`NonFiniteLossGuard` stops training at the first non-finite loss, before the optimiser step spreads it.

Subject-specific fits (no validation) use ``TrainingCheckpoint(..., validator=None)``: the model is written when the
fit completes, never on an exception or Ctrl-C, so an interrupted fit never appears under the final name.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

from monai_inr.io import remove_stale_partials, save_atomic
from monai_inr.networks.utils import unwrap_network

__all__ = [
    "TrainingError",
    "non_finite_tensors",
    "TrainingCheckpoint",
    "NonFiniteLossGuard",
    "TrainingTimeLimit",
]

logger = logging.getLogger(__name__)

class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss or weights); the message is one sentence that says what to do."""


def _is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def non_finite_tensors(state: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors of a state dict that hold a NaN or Inf."""
    return [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
            and not bool(torch.isfinite(v).all())]


class NonFiniteLossGuard:
    """Stop training at the first NaN/Inf loss with one sentence (:class:`TrainingError`), before it reaches a model.

    Attach it to the trainer; ``output_transform`` picks the loss out of the engine output (MONAI: ``output['loss']``).
    The check runs on ``ITERATION_COMPLETED``; :class:`TrainingCheckpoint` separately refuses to write non-finite
    weights, so the last good ``model.pt`` always survives.
    """

    def __init__(self, output_transform=None) -> None:
        self.output_transform = output_transform or (lambda out: out[0]["loss"] if isinstance(out, list) else out["loss"])

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = self.output_transform(engine.state.output)
        value = float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else float(loss)
        if not math.isfinite(value):
            raise TrainingError(
                f"training stopped at epoch {engine.state.epoch}, iteration {engine.state.iteration}: the loss is "
                f"{value}; check the training images for NaN/Inf or constant volumes, or lower the learning rate "
                f"(the last good model, if any, is kept)."
            )


class TrainingTimeLimit:
    """Stop training cleanly once ``max_minutes`` of wall time have passed, at the end of an epoch that is a multiple
    of ``interval`` (attach after :class:`TrainingCheckpoint` with the same interval, so the state just saved is the
    one a resumed run continues from). ``max_minutes=None`` never stops.

    A training budget in time rather than epochs keeps a CPU profile within its stated budget on a busy machine.
    """

    def __init__(self, max_minutes: float | None, interval: int = 1) -> None:
        if max_minutes is not None and not (math.isfinite(float(max_minutes)) and float(max_minutes) > 0):
            raise ValueError(f"TrainingTimeLimit: max_minutes must be positive, got {max_minutes}.")
        self.max_seconds = None if max_minutes is None else 60.0 * float(max_minutes)
        self.interval = max(1, int(interval))
        self._start: float | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def _started(self, engine: Engine) -> None:
        self._start = time.perf_counter()

    def __call__(self, engine: Engine) -> None:
        if self.max_seconds is None or self._start is None:
            return
        elapsed = time.perf_counter() - self._start
        if elapsed >= self.max_seconds:
            logger.info("training time limit of %.1f min reached at epoch %d (%.1f min); stopping",
                        self.max_seconds / 60.0, engine.state.epoch, elapsed / 60.0)
            engine.terminate()


class TrainingCheckpoint:
    """Atomic best-model saving and a resumable training state, for a MONAI ``SupervisedTrainer``.

    Attach it to the trainer after its ``ValidationHandler`` (handlers fire in the order they were attached): every
    ``interval`` epochs it reads ``validator.state.metrics[key_metric_name]`` (default: the validator's key metric),
    writes ``model_filename`` when the metric improved, and writes ``state_filename`` with everything needed to resume.
    With ``validator=None`` (subject-specific fits) the model is written once, when the run completes.

    Args:
        save_dir: folder of the checkpoints (created).
        network: the trained network (a DDP wrapper is unwrapped; only rank 0 writes).
        optimizer, lr_scheduler: saved and restored with the training state when given.
        validator: the evaluator whose key metric selects the best model; ``None`` saves at completion only.
        interval: epochs between saves (the ``ValidationHandler`` interval).
        key_metric_name: metric that selects the best model (``None``: ``validator.state.key_metric_name``).
        mode: ``"max"`` (a PSNR) or ``"min"`` (a validation loss): the direction in which the key metric improves.
        model_filename, state_filename: file names inside ``save_dir``.
        final_filename: also write the network under this name when the run completes (never on an exception or
            Ctrl-C), e.g. ``"model_final.pt"``.
        save_interval: also keep a snapshot every ``save_interval`` epochs as ``<periodic_prefix><epoch>.pt``.
        resume: resume from ``state_filename`` when it exists; ``False`` starts fresh and keeps the earlier files
            under timestamped names.
        metadata: JSON-able facts stored in the training state (e.g. the network configuration).
        carry_network_def: write model files as ``{"network_def": network.config, "model": weights}``
            (:func:`~monai_inr.engines.checks.save_network_checkpoint`, float32) so that inference builds the network
            that was trained (:func:`~monai_inr.engines.checks.network_from_checkpoint`) even when its definition
            was derived from the data (a subject-specific fit sized to its acquisition); the network must have a
            ``config``.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        lr_scheduler: Any = None,
        validator: Engine | None = None,
        interval: int = 1,
        key_metric_name: str | None = None,
        model_filename: str = "model.pt",
        state_filename: str = "training_state.pt",
        resume: bool = True,
        metadata: Mapping[str, Any] | None = None,
        mode: str = "max",
        final_filename: str | None = None,
        save_interval: int | None = None,
        periodic_prefix: str = "periodic_model_epoch=",
        carry_network_def: bool = False,
    ) -> None:
        if int(interval) < 1:
            raise ValueError(f"TrainingCheckpoint: interval must be >= 1, got {interval}.")
        if mode not in ("max", "min"):
            raise ValueError(f"TrainingCheckpoint: mode must be 'max' or 'min', got {mode!r}.")
        if save_interval is not None and int(save_interval) < 1:
            raise ValueError(f"TrainingCheckpoint: save_interval must be >= 1, got {save_interval}.")
        self.save_dir = Path(save_dir)
        self.network = network
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.validator = validator
        self.interval = int(interval)
        self.key_metric_name = key_metric_name
        self.model_path = self.save_dir / model_filename
        self.state_path = self.save_dir / state_filename
        self.resume = bool(resume)
        self.metadata = dict(metadata or {})
        self.sign = 1.0 if mode == "max" else -1.0
        self.final_path = None if final_filename is None else self.save_dir / final_filename
        self.save_interval = None if save_interval is None else int(save_interval)
        self.periodic_prefix = periodic_prefix
        self.carry_network_def = bool(carry_network_def)
        if self.carry_network_def and not isinstance(getattr(unwrap_network(network), "config", None), dict):
            raise ValueError(f"TrainingCheckpoint: carry_network_def needs a network with a config, got "
                             f"{type(unwrap_network(network)).__name__}.")
        self.best_metric = -self.sign * math.inf
        self.best_epoch = 0

    # ---------------------------------------------------------------------------------------------------- wiring
    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.started)
        if self.validator is not None:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self.validated)
        if self.validator is None or self.final_path is not None:
            engine.add_event_handler(Events.COMPLETED, self.completed)
        if self.save_interval is not None:
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.snapshot)

    # ---------------------------------------------------------------------------------------------------- events
    def started(self, engine: Engine) -> None:
        """Remove stale temporaries; resume from the training state, or move earlier files aside."""
        if _is_main_process():
            self.save_dir.mkdir(parents=True, exist_ok=True)
            for p in remove_stale_partials(self.save_dir):
                logger.info("removed a temporary file left by an interrupted run: %s", p)
        if self.resume and self.state_path.is_file():
            self._load_state(engine)
        elif _is_main_process():
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for p in (self.model_path, self.state_path):
                if p.is_file():
                    kept = p.with_name(f"{p.stem}.{stamp}{p.suffix}")
                    os.replace(p, kept)
                    logger.info("starting a fresh run: kept the earlier %s as %s", p.name, kept.name)

    def validated(self, engine: Engine) -> None:
        metric = self._key_metric()
        improved = metric is not None and math.isfinite(metric) and self.sign * metric > self.sign * self.best_metric
        if improved:
            self.best_metric, self.best_epoch = float(metric), int(engine.state.epoch)
        if not _is_main_process():
            return
        weights = self._weights()
        if improved:
            self._save_model(weights, self.model_path)
            logger.info("epoch %d: %s %.4f is the best so far, saved %s", engine.state.epoch,
                        self._metric_name(), metric, self.model_path)
        save_atomic(self._state(engine, weights), self.state_path)

    def completed(self, engine: Engine) -> None:
        if _is_main_process():
            path = self.model_path if self.validator is None else self.final_path
            self._save_model(self._weights(), path)
            logger.info("run completed, saved %s", path)

    def snapshot(self, engine: Engine) -> None:
        if _is_main_process():
            path = self.save_dir / f"{self.periodic_prefix}{int(engine.state.epoch)}.pt"
            self._save_model(self._weights(), path)
            logger.info("epoch %d: snapshot saved %s", engine.state.epoch, path)

    # ---------------------------------------------------------------------------------------------------- helpers
    def _metric_name(self) -> str:
        if self.key_metric_name is not None:
            return self.key_metric_name
        return str(getattr(self.validator.state, "key_metric_name", "") or "")

    def _key_metric(self) -> float | None:
        metrics = getattr(self.validator.state, "metrics", {}) or {}
        name = self._metric_name()
        if name not in metrics:
            return None
        value = metrics[name]
        value = float(value.item() if isinstance(value, torch.Tensor) else value)
        return value

    def _save_model(self, weights: dict[str, torch.Tensor], path: Path) -> None:
        if self.carry_network_def:
            from monai_inr.engines.checks import save_network_checkpoint

            save_network_checkpoint(unwrap_network(self.network).config, weights, path, dtype=None)
        else:
            save_atomic(weights, path)

    def _weights(self) -> dict[str, torch.Tensor]:
        state = {k: v.detach().cpu() for k, v in unwrap_network(self.network).state_dict().items()}
        bad = non_finite_tensors(state)
        if bad:
            raise TrainingError(
                f"refusing to save a network with NaN/Inf weights ({len(bad)} tensors, such as {bad[0]}); training "
                f"diverged: check the training data or lower the learning rate (the last good model is kept)."
            )
        return state

    def _state(self, engine: Engine, weights: dict[str, torch.Tensor]) -> dict[str, Any]:
        state: dict[str, Any] = {
            "network": weights,
            "epoch": int(engine.state.epoch),
            "iteration": int(engine.state.iteration),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "metric_name": self._metric_name() if self.validator is not None else "",
            "metadata": self.metadata,
        }
        if self.optimizer is not None:
            state["optimizer"] = self.optimizer.state_dict()
        if self.lr_scheduler is not None:
            state["lr_scheduler"] = self.lr_scheduler.state_dict()
        return state

    def _load_state(self, engine: Engine) -> None:
        try:
            state = torch.load(str(self.state_path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise TrainingError(
                f"{self.state_path}: the saved training state is unreadable ({type(e).__name__}); delete it or start "
                f"fresh with --resume false."
            ) from e
        bad = non_finite_tensors(state.get("network", {}))
        if bad:
            raise TrainingError(f"{self.state_path}: the saved network holds NaN/Inf weights; start fresh with "
                                f"--resume false.")
        unwrap_network(self.network).load_state_dict(state["network"])
        if self.optimizer is not None and "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])
        if self.lr_scheduler is not None and "lr_scheduler" in state:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.best_metric = float(state.get("best_metric", -self.sign * math.inf))
        self.best_epoch = int(state.get("best_epoch", 0))
        epoch, iteration = int(state["epoch"]), int(state["iteration"])
        max_epochs = engine.state.max_epochs
        if max_epochs is not None and epoch >= max_epochs:
            logger.info("%s: the saved run already reached epoch %d of %d; nothing left to train (pass --resume false "
                        "to start again)", self.state_path, epoch, max_epochs)
        engine.state.epoch, engine.state.iteration = epoch, iteration
        logger.info("resumed from %s at epoch %d (best %s %.4f at epoch %d)", self.state_path, epoch,
                    state.get("metric_name", ""), self.best_metric, self.best_epoch)
