"""Engine pieces for 2D target + reference (multi-contrast) super-resolution bundles such as Dual-ArbNet.

* :class:`PrepareBatchReference`: hands ``network(image, reference, output_shape=label grid)`` to trainers/evaluators;
* :func:`validate_target_reference`: up-front checks of inference inputs (one sentence, nothing written).

The evaluation (slices, scales, reference types, scoring) lives in :mod:`monai_inr.evaluation.handlers`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.engines import PrepareBatch

from monai_inr.engines.checks import paired_file_lists
from monai_inr.inferers.slicewise import plan_reference, validate_scale_range
from monai_inr.io import InputError, read_nifti

__all__ = [
    "PrepareBatchReference",
    "read_image_geometry",
    "validate_target_reference",
    "load_ablation_checkpoint",
]


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


# ------------------------------------------------------------------------------------------------------------ checks


def read_image_geometry(path: str | os.PathLike) -> tuple[tuple[int, int, int], int, np.ndarray]:
    """``(spatial shape as 3D, channels, 4x4 affine)`` of a 2D or 3D NIfTI image (channels in a 4th/5th axis), after
    checking it is readable, finite and not constant (one-sentence :class:`~monai_inr.io.InputError` otherwise)."""
    p = Path(path)
    data, affine = read_nifti(p)
    shape = data.shape
    if len(shape) == 2:
        spatial, channels = (shape[0], shape[1], 1), 1
    elif len(shape) == 3:
        spatial, channels = shape, 1
    elif len(shape) == 4:
        spatial, channels = shape[:3], shape[3]
    elif len(shape) == 5 and shape[3] == 1:
        spatial, channels = shape[:3], shape[4]
    else:
        raise InputError(f"{p}: expected a 2D slice or a 3D volume (optionally with channels), got shape {shape}.")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise InputError(f"{p}: expected real-valued intensities (complex data as 2 channels), got dtype {data.dtype}.")
    if sum(int(n) > 1 for n in spatial) < 2:
        raise InputError(f"{p}: an image needs at least two in-plane axes with 2 or more pixels, got shape {shape}.")
    finite = np.isfinite(data)
    if not finite.all():
        raise InputError(f"{p}: contains {int((~finite).sum())} NaN or Inf voxels.")
    if float(data.max()) == float(data.min()):
        raise InputError(
            f"{p}: the image is constant (every voxel is {float(data.min()):g}), nothing to super-resolve."
        )
    return tuple(int(n) for n in spatial), int(channels), affine  # type: ignore


def validate_target_reference(
    targets: Any,
    references: Any,
    scale: Any = None,
    slice_axis: int = 2,
    min_scale: float = 1.0,
    max_scale: float | None = None,
) -> tuple[list[str], list[str]]:
    """Check inference inputs before any work: readable images, a reference per target, equal channel counts, the
    reference covering the target's FOV in the target's slice plane, and ``min_scale <= scale <= max_scale``.

    Returns the target and reference file lists. Raises :class:`~monai_inr.io.InputError` (one sentence).
    """
    scales = validate_scale_range(scale, min_scale, max_scale)
    t_files, r_files = paired_file_lists(targets, references, "target", "reference")
    for t, r in zip(t_files, r_files):
        t_shape, t_ch, t_aff = read_image_geometry(t)
        r_shape, r_ch, r_aff = read_image_geometry(r)
        if t_ch != r_ch:
            raise InputError(
                f"{t} has {t_ch} channel(s) but its reference {r} has {r_ch}; both must be magnitude (1 channel) or "
                f"both complex (2 channels)."
            )
        axis = 2 if t_shape[2] == 1 else int(slice_axis)
        out_shape = list(t_shape)
        for d, s in zip([d for d in range(3) if d != axis], scales):
            out_shape[d] = max(1, int(round(t_shape[d] * s)))
        try:
            plan_reference(t_shape, t_aff, out_shape, r_shape, r_aff, axis, what=f"reference {r}")
        except InputError as e:
            raise InputError(f"{t}: {e}") from None
    return t_files, r_files


def load_ablation_checkpoint(network: torch.nn.Module, path: str | os.PathLike, enabled: bool = True) -> Any:
    """Load the single-contrast ablation's weights (:func:`~monai_inr.engines.checks.load_checkpoint`) when
    ``enabled``; a missing file is an :class:`~monai_inr.io.InputError` naming the training command."""
    if not enabled:
        return None
    from monai_inr.engines.checks import load_checkpoint

    if not Path(path).is_file():
        raise InputError(
            f"{path}: the single-contrast ablation checkpoint is missing; train it with the same configs plus "
            f"--use_reference false --ckpt_dir {Path(path).parent}, or pass --eval_ablation false."
        )
    return load_checkpoint(network, path)
