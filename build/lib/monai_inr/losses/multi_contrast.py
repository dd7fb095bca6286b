"""The multi-contrast INR objective (McGinnis, Shit et al., MICCAI 2023, eq. 1)."""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["MultiContrastMSELoss"]


class MultiContrastMSELoss(torch.nn.Module):
    """Eq. 1 of McGinnis et al.: ``sum_c w_c * MSE over the samples observed in contrast c``.

    ``target`` ``(..., C)`` holds NaN where a sample has no value for that contrast; those entries contribute
    neither to the loss nor to the gradient. Per contrast the squared errors are averaged over its observed samples
    in the batch (upstream: MSE per contrast); a contrast without samples in the batch contributes 0.

    Args:
        weights: ``(alpha, beta, ...)``, one per contrast (paper: 1, 1); ``None`` = all 1.
    """

    def __init__(self, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.weights = None if weights is None else [float(w) for w in weights]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape.")
        c = pred.shape[-1]
        w = self.weights or [1.0] * c
        if len(w) != c:
            raise ValueError(f"{len(w)} loss weights for {c} contrasts.")
        observed = ~torch.isnan(target)
        t = torch.where(observed, target, torch.zeros_like(target))  # no NaN reaches the graph
        sq = torch.where(observed, (pred.float() - t) ** 2, torch.zeros_like(t))
        count = observed.reshape(-1, c).sum(0)
        per = sq.reshape(-1, c).sum(0) / count.clamp(min=1)
        return (per * torch.as_tensor(w, dtype=per.dtype, device=per.device)).sum()
