"""Prepare-batch functions: what each bundle's trainer and evaluator hand their network, inferer and loss.

* :class:`PrepareBatchOutputGrid`: image, label and the label's grid (ArSSR, :class:`~monai_inr.inferers.ImplicitInferer`);
* :class:`PrepareBatchReference`: target, reference and the label's grid (Dual-ArbNet);
* :class:`PrepareBatchCoordinates`, :class:`PrepareBatchTargetSpacing`: coordinates and targets of a subject fit, the
  target spacing of its inference (multi-contrast INR);
* :class:`PrepareBatchNexus`, :class:`PrepareBatchNexusVolume`: patches and query points for training, whole volumes
  for inference (Nexus-INR).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from monai.data import MetaTensor
from monai.engines import PrepareBatch
from monai.utils import CommonKeys

from monai_inr.coords import as_scale_tuple
from monai_inr.errors import InputError

__all__ = [
    "PrepareBatchOutputGrid",
    "PrepareBatchReference",
    "PrepareBatchCoordinates",
    "PrepareBatchTargetSpacing",
    "PrepareBatchNexus",
    "PrepareBatchNexusVolume",
]


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


class PrepareBatchCoordinates(PrepareBatch):
    """``(batch[coord_key], batch[target_key])`` on the device: network input and loss target; when the batch holds
    ``profile_key`` (the samples' slice-profile vectors) it goes to the inferer as ``profile=``
    (:class:`~monai_inr.inferers.SliceProfileInferer`)."""

    def __init__(self, coord_key: str = "coord", target_key: str = "target", profile_key: str = "profile") -> None:
        self.coord_key = coord_key
        self.target_key = target_key
        self.profile_key = profile_key

    def __call__(self, batchdata: dict[str, torch.Tensor], device=None, non_blocking: bool = False, **kwargs):
        x = batchdata[self.coord_key].to(device=device, non_blocking=non_blocking)
        y = batchdata[self.target_key].to(device=device, non_blocking=non_blocking)
        if self.profile_key in batchdata:
            p = batchdata[self.profile_key].to(device=device, non_blocking=non_blocking)
            return x, y, (), {"profile": p}
        return x, y


class PrepareBatchTargetSpacing(PrepareBatch):
    """Inference batches: ``inputs`` = the requested target spacing ``(1, 3)`` from ``batch[key]`` (``None`` when the
    batch has none: the inferer's own output grid is used), no label."""

    def __init__(self, key: str = "target_spacing") -> None:
        self.key = key

    def __call__(self, batchdata: Mapping[str, Any], device=None, non_blocking: bool = False, **kwargs):
        if batchdata.get(self.key) is None:  # the inferer's own grid (a reference image) decides
            return None, None
        try:
            ts = as_scale_tuple(batchdata[self.key], 3, name="target_spacing")
        except ValueError as e:
            raise InputError(str(e)) from None
        return torch.tensor([ts], dtype=torch.float64), None


class PrepareBatchNexus(PrepareBatch):
    """``(t1w_lr, (t2w_lr, coord, position), {target, seg})`` for ``SupervisedTrainer``:
    ``network(t1w_lr, t2w_lr, coord, position)`` and ``NexusLoss(outputs, {"target": ..., "seg": ...})``. ``seg`` is
    ``None`` when the batch has no labels; ``position`` (the queries' whole-volume coordinates, which the absolute
    positional encoding reads) is ``None`` when the batch has none (the patches are then taken as whole volumes)."""

    def __call__(self, batchdata: Mapping[str, Any], device=None, non_blocking: bool = False, **kwargs):
        def mv(x):  # plain tensors: MetaTensor bookkeeping on every network op costs time and is not needed here
            x = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
            return x.to(device=device, non_blocking=non_blocking)

        t1, t2, c = mv(batchdata["t1w_lr"]).float(), mv(batchdata["t2w_lr"]).float(), mv(batchdata["coord"]).float()
        seg = mv(batchdata["seg"]) if "seg" in batchdata else None
        position = mv(batchdata["position"]).float() if "position" in batchdata else None
        targets = {"target": mv(batchdata["target"]).float(), "seg": seg}
        return t1, targets, (t2, c, position), {}


class PrepareBatchNexusVolume(PrepareBatch):
    """``(t1w_lr, reference or None, (t2w_lr, output_shape, output_affine), {})`` from a batch of one subject (the
    stacked HR references become the evaluator's ``label``)."""

    def __call__(self, batchdata: Mapping[str, Any], device=None, non_blocking: bool = False, **kwargs):
        t1, t2 = batchdata["t1w_lr"], batchdata["t2w_lr"]
        shape = tuple(int(n) for n in torch.as_tensor(batchdata["output_shape"]).reshape(-1, 3)[0])
        affine = torch.as_tensor(batchdata["output_affine"]).reshape(-1, 4, 4)[0].double().cpu().numpy()
        return t1, batchdata.get("reference"), (t2, shape, affine), {}


class PrepareBatchReference(PrepareBatch):
    """``(image, label, (reference,), {"output_shape": label grid})`` from a batch dict.

    The network (training, through ``SimpleInferer``) or :class:`~monai_inr.inferers.SliceWiseInferer` (validation,
    inference) is then called as ``f(image, reference, output_shape=...)``. Without a label (inference) no output shape
    is passed, so the inferer's scale decides the grid; without a reference key in the batch nothing extra is passed.
    """

    def __init__(self, image_key: str = "image", reference_key: str = "reference", label_key: str = "label") -> None:
        self.image_key, self.reference_key, self.label_key = image_key, reference_key, label_key

    def __call__(
        self, batchdata: dict[str, torch.Tensor], device=None, non_blocking: bool = False, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple, dict]:
        image = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, **kwargs)
        args: tuple = ()
        if self.reference_key in batchdata and batchdata[self.reference_key] is not None:
            args = (batchdata[self.reference_key].to(device=device, non_blocking=non_blocking, **kwargs),)
        label = batchdata.get(self.label_key)
        if label is None:
            return image, None, args, {}
        label = label.to(device=device, non_blocking=non_blocking, **kwargs)
        spatial = tuple(int(s) for s in label.shape[2:])
        return image, label, args, {"output_shape": spatial}
