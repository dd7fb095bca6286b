"""Mutual-information early stopping: model selection for multi-contrast INRs without ground truth.

McGinnis, Shit et al., "Multi-contrast MRI Super-resolution via Implicit Neural Representations", MICCAI 2023,
section 2 ("Model Selection and Inference") and Fig. 3: the mutual information between the two *predicted* contrasts,
``MI(Î1, Î2)`` (eq. 2), converges to a plateau close to the ground-truth value during the fit; detecting that plateau
stops the fit. No ground truth and no held-out voxels are needed.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any, Callable

import numpy as np
import torch
from ignite.engine import Engine, Events

from monai_inr.inferers.grid import predict_points
from monai_inr.metrics.mutual_information import mutual_information

__all__ = ["MIEarlyStopping"]


class MIEarlyStopping:
    """Ignite handler: after every epoch, the MI between the network's two predicted contrasts at fixed foreground
    points; stop when it plateaus.

    MI: 32-bin joint histogram (natural log, :func:`~monai_inr.metrics.mutual_information`) of the two outputs at
    ``points`` (normalised coordinates inside the foreground mask, e.g.
    :meth:`monai_inr.data.coordinates.ContrastPair.mask_points`), predictions clipped to [0, 1] and binned over their
    own range.

    Stopping rule (the upstream code's): keep the last ``window + 1`` MI values (the buffer starts at zeros); after each
    epoch take the mean absolute change over the buffer; stop when it differs from the previous epoch's mean by less
    than ``min_delta`` (1e-4 nats), i.e. when the rate of change itself has levelled off. Unlike upstream, stopping is
    allowed only from epoch ``min_epochs`` (default ``window + 1``: the buffer then holds real values only; upstream's
    zero-filled buffer can stop at epoch 2).

    Each value is stored in ``engine.state.metrics[metric_name]`` (so ``StatsHandler``/TensorBoard log it) and in
    :attr:`history`; :attr:`stopped_epoch` is set when the rule fires. The fitted network at that epoch is the
    selected model (save it with a ``CheckpointSaver(save_final=True)``, which runs on completion).

    Args:
        points: ``(P, 3)`` normalised query points, or a callable returning them (evaluated on first use).
        bins: histogram bins (32).
        window: changes averaged (3).
        min_delta: plateau tolerance in nats (1e-4).
        min_epochs: earliest epoch at which the fit may stop.
        channels: the two output channels compared.
        chunk_size: points per forward pass.
        network: the network to probe; default the engine's ``network`` (DDP is unwrapped).
        metric_name: key in ``engine.state.metrics``.
        stop: set False to only record the MI trajectory (monitoring without stopping).
    """

    def __init__(
        self,
        points: torch.Tensor | Callable[[], torch.Tensor],
        bins: int = 32,
        window: int = 3,
        min_delta: float = 1e-4,
        min_epochs: int | None = None,
        channels: tuple[int, int] = (0, 1),
        chunk_size: int = 65536,
        network: torch.nn.Module | None = None,
        metric_name: str = "mi_pred",
        stop: bool = True,
    ) -> None:
        if int(window) < 1:
            raise ValueError(f"window must be positive, got {window}.")
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be non-negative, got {min_delta}.")
        self._points = points
        self.bins = int(bins)
        self.window = int(window)
        self.min_delta = float(min_delta)
        self.min_epochs = int(window) + 1 if min_epochs is None else int(min_epochs)
        self.channels = tuple(int(c) for c in channels)
        self.chunk_size = int(chunk_size)
        self.network = network
        self.metric_name = metric_name
        self.stop = bool(stop)
        self.logger = logging.getLogger(__name__)
        self.reset()

    def reset(self) -> None:
        self.history: list[float] = []
        self.buffer: deque[float] = deque([0.0] * (self.window + 1), maxlen=self.window + 1)
        self.previous_mean: float | None = None
        self.stopped_epoch: int | None = None

    @property
    def points(self) -> torch.Tensor:
        if callable(self._points):
            self._points = self._points()
        return self._points

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: self.reset())
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def compute(self, network: torch.nn.Module) -> float:
        """MI between the two predicted channels at :attr:`points`."""
        pred = predict_points(network, self.points, self.chunk_size).clamp(0.0, 1.0).numpy()
        return mutual_information(pred[:, self.channels[0]], pred[:, self.channels[1]], bins=self.bins)

    def update(self, mi: float) -> bool:
        """Add one epoch's MI; True when the stopping rule fires."""
        self.history.append(float(mi))
        self.buffer.append(float(mi))
        mean_change = float(np.mean(np.abs(np.diff(np.asarray(self.buffer)))))
        fire = (
            self.previous_mean is not None
            and len(self.history) >= self.min_epochs
            and abs(mean_change - self.previous_mean) < self.min_delta
        )
        self.previous_mean = mean_change
        return bool(fire)

    def __call__(self, engine: Engine) -> None:
        net = self.network if self.network is not None else getattr(engine, "network")
        mi = self.compute(net)
        engine.state.metrics[self.metric_name] = mi
        fire = self.update(mi)
        self.logger.info("epoch %d: MI(pred1, pred2) = %.5f nats", engine.state.epoch, mi)
        if fire and self.stop and self.stopped_epoch is None:
            self.stopped_epoch = int(engine.state.epoch)
            self.logger.info(
                "MI plateau at epoch %d (change of the mean |dMI| < %g): stopping.", engine.state.epoch, self.min_delta
            )
            engine.terminate()

    def state(self) -> dict[str, Any]:
        return {"history": list(self.history), "stopped_epoch": self.stopped_epoch}
