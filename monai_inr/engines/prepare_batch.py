"""Prepare-batch functions that hand implicit networks and the implicit inferer what they need."""

from __future__ import annotations

from typing import Any

import torch
from monai.engines import PrepareBatch
from monai.utils import CommonKeys

__all__ = ["PrepareBatchOutputGrid"]


class PrepareBatchOutputGrid(PrepareBatch):
    """Image and label, plus ``output_shape`` = the label's spatial shape as a keyword argument for the inferer.

    In validation and evaluation the LR input was made from the label, so the prediction must be queried exactly on
    the label's grid (same field of view, same voxels): :class:`monai_inr.inferers.ImplicitInferer` takes
    ``output_shape`` for that. Without a label (inference) nothing extra is passed and the inferer's own scale or target
    spacing decides the grid.
    """

    def __init__(self, image_key: str = CommonKeys.IMAGE, label_key: str = CommonKeys.LABEL) -> None:
        self.image_key = image_key
        self.label_key = label_key

    def __call__(
        self, batchdata: dict[str, torch.Tensor], device: str | torch.device | None = None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple, dict]:
        image = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, **kwargs)
        label = batchdata.get(self.label_key)
        if label is None:
            return image, None, (), {}
        label = label.to(device=device, non_blocking=non_blocking, **kwargs)
        return image, label, (), {"output_shape": tuple(int(s) for s in label.shape[2:])}
