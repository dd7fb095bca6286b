"""The subject-specific fit of multi-contrast INR (McGinnis, Shit et al., MICCAI 2023, section 2) as ignite glue.

The pieces live in their own layers: the shared frame in :mod:`monai_inr.coords`, the subject and its samples in
:mod:`monai_inr.data.coordinates`, the loss in :mod:`monai_inr.losses.multi_contrast`, the batches in
:mod:`monai_inr.engines.prepare_batch`, the MI early stopping in :mod:`monai_inr.engines.early_stopping` and the grid
inference in :mod:`monai_inr.inferers.grid`. Here: :class:`LossPSNR` (the training log's PSNR) and :func:`fit_pair`,
the bundle's trainer assembled in Python for the evaluations and benchmarks.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from ignite.engine import Events
from ignite.handlers import TimeLimit
from ignite.metrics import Average
from monai.engines import SupervisedTrainer
from monai.handlers import LrScheduleHandler

from monai_inr.data.coordinates import ContrastPair, ShuffledBatchSampler
from monai_inr.engines.early_stopping import MIEarlyStopping
from monai_inr.engines.prepare_batch import PrepareBatchCoordinates
from monai_inr.losses.multi_contrast import MultiContrastMSELoss
from monai_inr.networks.utils import unwrap_network

__all__ = ["loss_psnr", "LossPSNR", "FitResult", "fit_pair"]

logger = logging.getLogger(__name__)


def loss_psnr(loss: float | torch.Tensor, num_contrasts: int = 2) -> float:
    """``-10 log10(loss / num_contrasts)`` dB (floored at 1e-12): the PSNR of a summed per-contrast MSE on [0, 1]."""
    v = float(loss.detach()) if isinstance(loss, torch.Tensor) else float(loss)
    return -10.0 * math.log10(max(v / int(num_contrasts), 1e-12))


class LossPSNR(Average):
    """Ignite metric: the epoch's mean training loss as a PSNR, ``-10 log10(mean loss / num_contrasts)`` dB.

    With unit loss weights and [0, 1] intensities this is the PSNR of the fit to the training voxels (of the MSE
    averaged over the contrasts); it reads better in logs than an MSE of 1e-5.
    """

    def __init__(self, num_contrasts: int = 2, output_transform=None, device: str | torch.device = "cpu") -> None:
        self.num_contrasts = int(num_contrasts)
        super().__init__(output_transform=output_transform or (lambda out: out["loss"].detach()), device=device)

    def compute(self) -> float:
        return loss_psnr(float(super().compute()), self.num_contrasts)


# ------------------------------------------------------------------------------------------------------ fit


@dataclass
class FitResult:
    """Outcome of :func:`fit_pair`."""

    network: torch.nn.Module
    epochs: int
    seconds: float
    stopped_early: bool
    mi_history: list[float] = field(default_factory=list)
    loss_history: list[float] = field(default_factory=list)


def fit_pair(
    network: torch.nn.Module,
    pair: ContrastPair,
    epochs: int = 50,
    batch_size: int = 1000,
    learning_rate: float = 4e-4,
    loss_weights: Sequence[float] | None = None,
    contrasts: Sequence[int] | None = None,
    early_stopping: bool = True,
    mi_points: int = 65536,
    mi_min_delta: float = 1e-4,
    mi_window: int = 3,
    mi_min_epochs: int = 4,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    device: str | torch.device = "cpu",
    seed: int = 0,
    time_limit: float | None = None,
    amp: bool = False,
    extra_handlers: Sequence[Any] = (),
    log_every: int = 0,
) -> FitResult:
    """Fit ``network`` to ``pair`` with a MONAI ``SupervisedTrainer`` (the same pieces as the bundle's train.json).

    Adam with cosine annealing of the learning rate over ``epochs`` (stepped per epoch), batches of ``batch_size``
    voxels reshuffled every epoch, :class:`MultiContrastMSELoss`, and (``early_stopping``, for networks with two
    outputs) :class:`monai_inr.engines.early_stopping.MIEarlyStopping` on ``mi_points`` foreground points.
    ``contrasts`` fits a single-contrast network to the selected contrast(s) only. ``time_limit`` (seconds) ends
    the fit at the first iteration past it (benchmarks).

    Returns:
        :class:`FitResult` (the network is fitted in place and left in eval mode).
    """
    torch.manual_seed(seed)
    pair.configure(network, contrasts)
    network = network.to(device)
    ds = pair.dataset(contrasts)
    sampler = ShuffledBatchSampler(len(ds), batch_size, shuffle=True, seed=seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, sampler=sampler, num_workers=0)
    opt = torch.optim.Adam(
        network.parameters(), lr=learning_rate, betas=tuple(betas), eps=eps, weight_decay=weight_decay
    )
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(epochs)))
    handlers: list[Any] = [LrScheduleHandler(sched, print_lr=False)]
    stopper = None
    n_out = int(getattr(unwrap_network(network), "out_channels", 1))
    if early_stopping and n_out >= 2:
        stopper = MIEarlyStopping(
            pair.mask_points(mi_points, seed=seed), min_delta=mi_min_delta, window=mi_window, min_epochs=mi_min_epochs
        )
        handlers.append(stopper)
    handlers.extend(extra_handlers)
    trainer = SupervisedTrainer(
        device=torch.device(device),
        max_epochs=int(epochs),
        train_data_loader=loader,
        network=network,
        optimizer=opt,
        loss_function=MultiContrastMSELoss(loss_weights),
        prepare_batch=PrepareBatchCoordinates(),
        train_handlers=handlers,
        amp=amp,
        decollate=False,  # a batch is thousands of points: never split it into per-point dictionaries
    )
    losses: list[float] = []
    running = {"sum": 0.0, "n": 0}

    @trainer.on(Events.ITERATION_COMPLETED)
    def _acc(engine):
        running["sum"] += float(engine.state.output["loss"].detach())
        running["n"] += 1
        if log_every and engine.state.iteration % log_every == 0:
            mean = running["sum"] / running["n"]
            logger.info("epoch %d iteration %d loss %.5f", engine.state.epoch, engine.state.iteration, mean)

    @trainer.on(Events.EPOCH_COMPLETED)
    def _epoch(engine):
        losses.append(running["sum"] / max(1, running["n"]))
        running["sum"], running["n"] = 0.0, 0

    if time_limit is not None:
        trainer.add_event_handler(Events.ITERATION_COMPLETED, TimeLimit(max(1, int(round(float(time_limit))))))
    t0 = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - t0
    unwrap_network(network).eval()
    return FitResult(
        network=network,
        epochs=int(trainer.state.epoch),
        seconds=seconds,
        stopped_early=bool(stopper is not None and stopper.stopped_epoch is not None),
        mi_history=list(stopper.history) if stopper is not None else [],
        loss_history=losses,
    )
