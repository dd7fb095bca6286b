"""Batch-norm recalibration ("precise BN"): the handler that recomputes population statistics after training."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from ignite.engine import Events
from monai.data import MetaTensor

__all__ = ["recalibrate_batch_norm", "BatchNormRecalibration"]


@torch.no_grad()
def recalibrate_batch_norm(network: torch.nn.Module, data_loader: Any, image_key: str = "image", device: Any = None,
                           max_batches: int | None = None) -> int:
    """Recompute every batch-norm layer's running mean and variance as the exact average over ``data_loader``
    (Ioffe & Szegedy's population statistics; "precise BN"). After a short training run the exponential running
    averages lag behind the fast-changing weights, and the network in ``eval()`` mode (how the perceptual loss uses
    the VGG) then differs from the trained one. Returns the number of batches used."""
    bns = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    was_training = network.training
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    network.train()
    device = device if device is not None else next(network.parameters()).device
    n = 0
    for batch in data_loader:
        x = batch[image_key] if isinstance(batch, Mapping) else batch[0]
        x = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
        network(x.to(device))
        n += 1
        if max_batches is not None and n >= max_batches:
            break
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    network.train(was_training)
    return n


class BatchNormRecalibration:
    """Ignite handler: :func:`recalibrate_batch_norm` of the engine's network over ``data_loader`` after the last
    epoch (register it before validation and checkpoint handlers, which then see the recalibrated statistics)."""

    def __init__(self, data_loader: Any, image_key: str = "image", max_batches: int | None = None) -> None:
        self.data_loader, self.image_key, self.max_batches = data_loader, image_key, max_batches

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(
            Events.EPOCH_COMPLETED(event_filter=lambda e, epoch: epoch == e.state.max_epochs), self
        )

    def __call__(self, engine: Any) -> None:
        n = recalibrate_batch_norm(engine.network, self.data_loader, self.image_key, engine.state.device,
                                   self.max_batches)
        engine.logger.info(f"batch-norm statistics recomputed over {n} batches")
