"""Inference of coordinate networks fitted in a shared frame (multi-contrast INR) on any world grid.

McGinnis, Shit et al., MICCAI 2023, section 2 ("Model Selection and Inference"): the fitted network is queried at the
voxel centres of an isotropic grid over the union field of view. :func:`predict_points` queries normalised points
(also the MI early stopping's evaluation), :func:`predict_on_grid` a world grid through the frame, and
:class:`MultiContrastGridInferer` is the ``SupervisedEvaluator`` inferer of the bundle's inference.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from monai_inr.coords import SharedFrame, frame_points, spacing_from_affine
from monai_inr.errors import InputError
from monai_inr.io import read_image_geometry
from monai_inr.inferers.memory import check_memory, estimate_peak_bytes, memory_budget_bytes
from monai_inr.networks.utils import unwrap_network
from monai_inr.inferers.precision import amp_setting, resolve_amp_bf16

__all__ = ["predict_points", "predict_on_grid", "reference_grid", "MultiContrastGridInferer"]


def predict_points(
    network: torch.nn.Module, points: torch.Tensor, chunk_size: int = 65536, amp_bf16: bool | str = False
) -> torch.Tensor:
    """Network output ``(P, C)`` (float32, CPU) at normalised points ``(P, 3)``, chunked, in eval mode."""
    net = unwrap_network(network)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    outs = []
    try:
        amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve_amp_bf16(amp_bf16, device))
        with torch.inference_mode(), amp:
            for s in range(0, points.shape[0], int(chunk_size)):
                outs.append(net.query(points[s : s + int(chunk_size)].to(device)).float().cpu())
    finally:
        net.train(was_training)
    return torch.cat(outs) if outs else torch.zeros(0, getattr(net, "out_channels", 1))


def predict_on_grid(
    network: torch.nn.Module,
    frame: SharedFrame,
    shape: Sequence[int],
    affine: np.ndarray,
    chunk_size: int = 65536,
    amp_bf16: bool | str = False,
) -> torch.Tensor:
    """Network output ``(C, *shape)`` on a grid given by ``shape`` and world ``affine``, through ``frame``."""
    net = unwrap_network(network)
    device = next(net.parameters()).device
    n = int(np.prod(shape))
    out = torch.empty((getattr(net, "out_channels", 1), n), dtype=torch.float32)
    was_training = net.training
    net.eval()
    try:
        amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve_amp_bf16(amp_bf16, device))
        with torch.inference_mode(), amp:
            for s in range(0, n, int(chunk_size)):
                e = min(n, s + int(chunk_size))
                pts = frame_points(frame, shape, np.asarray(affine, np.float64), s, e).to(device)
                out[:, s:e] = net.query(pts).float().T.cpu()
    finally:
        net.train(was_training)
    return out.reshape(-1, *[int(v) for v in shape])


def reference_grid(path: str | os.PathLike | None) -> tuple[tuple[int, int, int], np.ndarray] | None:
    """``(spatial shape, affine)`` of the image at ``path`` from its header (``None`` for ``None``), the output grid
    of a :class:`MultiContrastGridInferer` that writes on another scan's grid."""
    if path is None or (isinstance(path, str) and not path.strip()):
        return None
    shape, _, affine = read_image_geometry(path, header_only=True)
    return shape, affine


class MultiContrastGridInferer(Inferer):
    """Sample a fitted multi-contrast INR on the isotropic grid over the union FOV at a target spacing.

    The grid comes from the geometry stored in the network (:class:`SharedFrame` of its ``frame_affine`` and
    ``fov_bounds`` buffers, :meth:`SharedFrame.output_grid`): exact target spacing, centred on the union FOV, axes of
    the reference contrast. Queries run in chunks of ``chunk_size`` under ``torch.inference_mode``.

    Call ``inferer(inputs, network)``: ``inputs`` ``(1, 3)`` (or ``(3,)``) holds the target spacing in mm
    (:class:`~monai_inr.engines.prepare_batch.PrepareBatchTargetSpacing`); ``target_spacing`` given to the constructor is used when ``inputs`` is
    ``None``. With ``output_grid`` = ``(shape, affine)`` (e.g. another scan's grid, :func:`reference_grid`) the
    contrasts are sampled at that grid's voxel centres instead, whatever the target spacing. Returns a MetaTensor ``(1, C, *shape)`` whose affine is the grid's and whose meta holds
    ``intensity_range`` (``C x 2``) for :class:`~monai_inr.transforms.SaveContrastsd`.

    Raises:
        InputError: a non-positive target spacing, or an output (plus working memory) beyond ``memory_budget_gb``
            (default: 6 GB or 80 % of the available memory), before any work.
    """

    def __init__(
        self,
        target_spacing: float | Sequence[float] | None = None,
        chunk_size: int = 65536,
        amp_bf16: bool | str = False,
        memory_budget_gb: float | None = None,
        output_grid: tuple[Sequence[int], Any] | None = None,
    ) -> None:
        super().__init__()
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}.")
        self.target_spacing = target_spacing
        self.output_grid = None
        if output_grid is not None:
            shape, affine = output_grid
            self.output_grid = (tuple(int(n) for n in shape)[:3], np.asarray(affine, dtype=np.float64).reshape(4, 4))
        self.chunk_size = int(chunk_size)
        self.amp_bf16 = amp_setting(amp_bf16)
        self.memory_budget_gb = memory_budget_gb

    def plan(self, network: torch.nn.Module, target_spacing: Any) -> tuple[SharedFrame, tuple[int, ...], np.ndarray]:
        """The grid for ``target_spacing``; raises :class:`InputError` when it does not fit the memory budget."""
        net = unwrap_network(network)
        frame = SharedFrame.from_affine(net.frame_affine, net.fov_bounds)
        if self.output_grid is not None:
            shape, affine = self.output_grid
            target_spacing = tuple(round(float(v), 4) for v in spacing_from_affine(affine))
        else:
            shape, affine = frame.output_grid(target_spacing)
        n = float(np.prod(shape))
        c = int(getattr(net, "out_channels", 1))
        # the output and its copy on saving, plus one chunk of queries
        need = estimate_peak_bytes(net, output_values=c * n, output_copies=2, queries=min(self.chunk_size, n))
        check_memory(
            need,
            memory_budget_bytes(self.memory_budget_gb),
            f"The output grid {'x'.join(map(str, shape))} at {target_spacing} mm ({c} contrasts)",
            "use a coarser --target_spacing or raise memory_budget_gb",
        )
        return frame, shape, affine

    def __call__(self, inputs: torch.Tensor | None, network: torch.nn.Module, *args: Any, **kwargs: Any) -> MetaTensor:
        if inputs is None or self.output_grid is not None:
            spacing = self.target_spacing
        else:
            spacing = [float(v) for v in torch.as_tensor(inputs).detach().cpu().reshape(-1, 3)[0]]
        if spacing is None and self.output_grid is None:
            raise InputError("no target spacing given; pass --target_spacing <mm>.")
        frame, shape, affine = self.plan(network, spacing)
        values = predict_on_grid(network, frame, shape, affine, self.chunk_size, self.amp_bf16)
        net = unwrap_network(network)
        if self.output_grid is not None:
            spacing = spacing_from_affine(affine)
        meta = {
            "intensity_range": net.intensity_range.detach().cpu().numpy().copy(),
            "target_spacing": np.asarray(spacing, dtype=np.float64),
            "spatial_shape": np.asarray(shape),
        }
        return MetaTensor(values[None], affine=torch.as_tensor(affine, dtype=torch.float64), meta=meta)
