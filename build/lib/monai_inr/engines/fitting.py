"""The subject-specific fit of multi-contrast INR (McGinnis, Shit et al., MICCAI 2023, section 2) as ignite glue.

The fit itself is defined once, by ``bundles/multi_contrast_inr/configs/train.json``; evaluations and benchmarks run
it through :func:`monai_inr.evaluation.bundle.fit_subject`. Its pieces live in their own layers: the shared frame in
:mod:`monai_inr.coords`, the subject and its samples in :mod:`monai_inr.data.coordinates`, the loss in
:mod:`monai_inr.losses.multi_contrast`, the batches in :mod:`monai_inr.engines.prepare_batch`, the MI early stopping in
:mod:`monai_inr.engines.early_stopping` and the grid inference in :mod:`monai_inr.inferers.grid`. Here:
:func:`loss_psnr` and :class:`LossPSNR`, the training log's PSNR.
"""

from __future__ import annotations

import math

import torch
from ignite.metrics import Average

__all__ = ["loss_psnr", "LossPSNR"]


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
