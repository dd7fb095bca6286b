"""Nexus-INR whole-volume inference on any world grid (Zhang et al., "Nexus-INR", arXiv:2508.03073, 2025).

:func:`predict_volume` (used by :class:`NexusVolumeInferer` in a ``SupervisedEvaluator`` and by
:func:`predict_subject`, the entry point of the evaluation):

1. both LR volumes are z-scored with their own statistics and encoded once (shared and specific maps), whole or,
   when the encoder's activations would exceed the memory budget, block-wise with a halo of the receptive radius
   (:func:`encode_tiled` over :func:`~monai_inr.inferers.implicit.plan_tiles`, identical result);
2. the output grid is processed in cubic tiles (a multiple of the attention window, aligned to the grid origin, so
   the attention windows form one partition of the output grid, padded to whole windows, whatever the tile size):
   the world position of every tile voxel is mapped into each modality's LR grid, the LR maps are sampled there
   trilinearly (the up-sampling of eq. 4-5 generalised to any output geometry), the windowed cross-attention runs on
   the tile plus :attr:`~monai_inr.networks.nets.NexusINR.attention_halo` voxels of context (one window with
   shifted windows, whose shifted partition reaches half a window beyond the tile), and every voxel of the tile is
   fused and decoded with the positional encoding of its coordinate in the whole LR volume (normalised to each
   modality's field of view for the absolute encoding, the frame the training sampler's ``position`` uses);
3. predictions are mapped back to each input's intensity units (inverse z-score).

The memory needed (LR feature maps, encoder workspace, tile working set and the output) is predicted before any work
(:func:`plan_memory`); a plan beyond the memory budget raises :class:`~monai_inr.errors.InputError` with the sentence
of :func:`~monai_inr.inferers.memory.memory_error`.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Any, Sequence

import numpy as np
import psutil
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from monai_inr import coords
from monai_inr.errors import InputError
from monai_inr.inferers.implicit import plan_tiles
from monai_inr.inferers.memory import (
    GB,
    decoder_bytes_per_query,
    encoder_bytes_per_voxel,
    estimate_peak_bytes,
    memory_budget_bytes,
    memory_error,
)
from monai_inr.io import check_volume, load_volume
from monai_inr.networks.utils import unwrap_network
from monai_inr.transforms.nexus_sampling import MODALITIES, zscore_stats
from monai_inr.inferers.precision import amp_setting, resolve_amp_bf16

__all__ = [
    "NexusVolumeInferer",
    "plan_memory",
    "check_budget",
    "encode_tiled",
    "predict_volume",
    "predict_subject",
]


def _as_volume(x: Any, name: str, in_channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(array, affine)`` from a path, an ``(array, affine)`` pair or a MetaTensor ``([C,] D, H, W)``."""
    if isinstance(x, (str, os.PathLike)):
        return load_volume(x, name=name, require_geometry=True, channels=in_channels)
    if isinstance(x, MetaTensor):
        arr, aff = x.detach().cpu().numpy(), np.asarray(x.affine, dtype=np.float64)
    elif isinstance(x, (tuple, list)) and len(x) == 2:
        arr = np.asarray(x[0].detach().cpu() if isinstance(x[0], torch.Tensor) else x[0])
        aff = np.asarray(x[1], np.float64)
    else:
        raise InputError(
            f"{name}: expected a NIfTI path, an (array, affine) pair or a MetaTensor, got {type(x).__name__}."
        )
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 4:
        raise InputError(
            f"{name}: has {arr.shape[0]} channels but the network expects {in_channels} per modality "
            f"(mismatched channel counts)."
        )
    return check_volume(arr, name=name), aff


def plan_memory(
    network: torch.nn.Module,
    lr_shapes: Sequence[Sequence[int]],
    output_shape: Sequence[int],
    tile_size: int = 32,
    encoder_voxels: int | None = None,
    in_use: float | None = None,
) -> dict[str, float]:
    """Predicted peak bytes of :func:`predict_volume` by the one rule of
    :func:`~monai_inr.inferers.memory.estimate_peak_bytes`: the LR feature maps are held throughout (counted as in
    use); the encoder (whole volume, or tiles of ``encoder_voxels`` voxels including their halo) and the output tiles
    (``tile_size ** 3`` queries at once, ``(tile_size + 2 * attention_halo) ** 3`` with shifted windows) work one
    after the other, so the peak is the larger of the two phases; the
    two output volumes (prediction and its inverse z-score) are counted in both. ``in_use`` is the process's resident
    set (default: measured now).

    Returns:
        ``feature_maps``, ``encoder_workspace``, ``tile``, ``output`` (bytes of each part) and ``total``.
    """
    net = unwrap_network(network)
    maps = 2 if net.dual_branch else 1
    n_lr = [int(np.prod(s)) for s in lr_shapes]
    enc_voxels = max(n_lr) if encoder_voxels is None else min(max(n_lr), int(encoder_voxels))
    # with shifted windows a tile's attention also runs over one window of context per side
    # (:attr:`~monai_inr.networks.nets.NexusINR.attention_halo`): its working set is counted over the larger block
    queries = (int(tile_size) + 2 * int(getattr(net, "attention_halo", 0))) ** 3
    output_values = 2 * int(np.prod(output_shape))
    rss = float(psutil.Process().memory_info().rss) if in_use is None else float(in_use)
    feature_maps = float(maps * net.feature_channels * sum(n_lr) * 4)
    common = {"output_values": output_values, "output_copies": 2, "in_use": rss + feature_maps}
    encode = estimate_peak_bytes(net, queries=0, encoder_voxels=enc_voxels, **common)
    decode = estimate_peak_bytes(net, queries=queries, **common)
    return {
        "feature_maps": feature_maps,
        "encoder_workspace": enc_voxels * encoder_bytes_per_voxel(net),
        "tile": queries * decoder_bytes_per_query(net),
        "output": 4.0 * output_values * 2,
        "total": max(encode, decode),
    }


def _min_encoder_voxels(net: torch.nn.Module, lr_shapes: Sequence[Sequence[int]], core: int = 8) -> int:
    r = int(net.receptive_radius)
    return max(int(np.prod([min(n, core + 2 * r) for n in s])) for s in lr_shapes)


def _plan_encoder_voxels(network, lr_shapes, output_shape, tile_size, memory_budget_gb, device, encoder_voxel_budget):
    """Largest encoder tile (voxels incl. halo) that fits the budget; :class:`InputError` when nothing fits."""
    net = unwrap_network(network)
    budget = memory_budget_bytes(memory_budget_gb, device)
    plan = plan_memory(net, lr_shapes, output_shape, tile_size, encoder_voxels=_min_encoder_voxels(net, lr_shapes))
    if plan["total"] > budget:
        raise memory_error(
            plan["total"],
            budget,
            f"the Nexus-INR output of shape {tuple(int(n) for n in output_shape)}",
            "use a coarser target spacing, smaller inputs or a larger memory_budget_gb",
            detail=f" (LR feature maps {plan['feature_maps'] / GB:.2f} GB, output {plan['output'] / GB:.2f} GB)",
        )
    # while encoding, only the maps and the outputs are alive beside the encoder (no output tile yet)
    fixed = plan_memory(net, lr_shapes, output_shape, tile_size=0, encoder_voxels=0)["total"]
    voxels = int((budget - fixed) // encoder_bytes_per_voxel(net))
    if encoder_voxel_budget is not None:  # an explicit cap (tests, benchmarks); blocks shrink to 8 voxels at least
        voxels = min(voxels, int(encoder_voxel_budget))
    return max(voxels, 1)


def check_budget(network, lr_shapes, output_shape, tile_size, memory_budget_gb, device="cpu") -> None:
    """Raise the memory sentence when even the smallest encoder blocks do not fit the budget (before any work)."""
    _plan_encoder_voxels(network, lr_shapes, output_shape, tile_size, memory_budget_gb, device, None)


def encode_tiled(net: torch.nn.Module, x: torch.Tensor, m: int, max_voxels: int) -> torch.Tensor:
    """:meth:`NexusINR.encode_modality` of ``x`` ``(1, C, D, H, W)``, block-wise when the volume (with the halo) is
    above ``max_voxels``: the blocks are :func:`~monai_inr.inferers.implicit.plan_tiles` with a halo of
    ``receptive_radius`` voxels (clipped at the volume borders, where the encoders' zero padding applies as in the
    whole-volume run; the maps themselves are assembled, so no extra voxel of context is needed as in the implicit
    inferer's lookups), so the result equals the untiled maps while only one block's activations are alive at a time."""
    shape = tuple(int(n) for n in x.shape[2:])
    if int(np.prod(shape)) <= max_voxels:
        return net.encode_modality(x, m)
    r = int(net.receptive_radius)
    plan = plan_tiles(shape, r, max_voxels)
    if plan is None:  # below what any split reaches: the smallest blocks the planner allows (cores of 8 voxels)
        plan = plan_tiles(shape, r, int(np.prod([min(n, 8 + 2 * r) for n in shape])))
    out = None
    for core, region in zip(itertools.product(*plan.cores), itertools.product(*plan.regions)):
        f = net.encode_modality(x[(slice(None), slice(None)) + tuple(slice(a, b) for a, b in region)], m)
        if out is None:
            out = torch.empty((1, f.shape[1], *shape), dtype=f.dtype, device=f.device)
        src = (slice(None), slice(None)) + tuple(slice(a - e, b - e) for (a, b), (e, _) in zip(core, region))
        out[(slice(None), slice(None)) + tuple(slice(a, b) for a, b in core)] = f[src]
    return out


def predict_volume(
    network: torch.nn.Module,
    t1w_lr: np.ndarray | torch.Tensor,
    affine1: np.ndarray,
    t2w_lr: np.ndarray | torch.Tensor,
    affine2: np.ndarray,
    output_shape: Sequence[int],
    output_affine: np.ndarray,
    device: str | torch.device = "cpu",
    tile_size: int = 32,
    memory_budget_gb: float | None = None,
    amp_bf16: bool | str = False,
    encoder_voxel_budget: int | None = None,
) -> np.ndarray:
    """Both modalities ``(2, *output_shape)`` (float32, input intensity units) on the grid of ``output_affine``.

    ``t1w_lr``, ``t2w_lr``: 3D LR arrays (raw intensities) on ``affine1`` / ``affine2``. See the module docstring.
    The encoders run on the whole LR volumes when they fit the memory budget, else block-wise with a halo
    (:func:`encode_tiled`, identical result); ``encoder_voxel_budget`` caps the block size (voxels incl. halo).

    Raises:
        InputError: inputs that do not overlap, or a plan beyond ``memory_budget_gb``.
    """
    net = unwrap_network(network)
    x = [np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float32) for v in (t1w_lr, t2w_lr)]
    x = [v.reshape(v.shape[-3:]) for v in x]
    aff = [np.asarray(affine1, np.float64), np.asarray(affine2, np.float64)]
    out_shape = tuple(int(n) for n in output_shape)
    out_aff = np.asarray(output_affine, np.float64)
    coords.check_overlap(x[0].shape, aff[0], x[1].shape, aff[1])
    device = torch.device(device)
    enc_voxels = _plan_encoder_voxels(
        net, [v.shape for v in x], out_shape, tile_size, memory_budget_gb, device, encoder_voxel_budget
    )
    stats = [zscore_stats(v, name=m) for v, m in zip(x, MODALITIES)]
    win = net.window
    tile = int(math.ceil(max(int(tile_size), win) / win) * win)
    result = np.empty((2, *out_shape), dtype=np.float32)
    was_training = net.training
    net.eval()
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=resolve_amp_bf16(amp_bf16, device))
    try:
        with torch.inference_mode(), amp:
            xt = [torch.from_numpy((v - s[0]) / s[1]).float()[None, None].to(device) for v, s in zip(x, stats)]
            lr_keys = [net.map_names(m) for m in range(2)]
            lr_maps = []
            for m in range(2):
                lr_maps.append(encode_tiled(net, xt[m], m, enc_voxels).float())
            del xt
            to_lr = [coords.voxel_map(out_aff, a) for a in aff]  # output voxel -> LR voxel, per modality
            halo = int(getattr(net, "attention_halo", 0))
            padded = np.asarray([int(math.ceil(n / win) * win) for n in out_shape])  # the attention's grid
            for start in np.ndindex(*[int(math.ceil(n / tile)) for n in out_shape]):
                s0 = np.asarray(start) * tile
                stop = np.minimum(s0 + tile, out_shape)
                r0, r1 = np.maximum(s0 - halo, 0), np.minimum(s0 + tile + halo, padded)  # window-aligned region
                region = tuple(int(n) for n in r1 - r0)
                ijk = np.stack(np.meshgrid(*[np.arange(a, b, dtype=np.float64) for a, b in zip(r0, r1)],
                                           indexing="ij"), -1).reshape(-1, 3)
                z: dict[str, torch.Tensor] = {}
                lr_voxel = []
                for m in range(2):
                    v = torch.from_numpy(ijk @ to_lr[m][:3, :3].T + to_lr[m][:3, 3]).to(device)
                    n = coords.voxel_to_normalized(v, x[m].shape).float()[None]
                    feats = coords.sample_features(lr_maps[m], n)[0]  # (region voxels, C_m)
                    for k, f in zip(lr_keys[m], torch.split(feats, net.feature_channels, dim=-1)):
                        z[k] = f.T.reshape(1, -1, *region)
                    lr_voxel.append(v.reshape(*region, 3))
                hr = net.attend(z)
                core = tuple(slice(int(a - r), int(b - r)) for a, b, r in zip(s0, stop, r0))  # the tile inside
                flat = {k: hv[(slice(None), slice(None)) + core].flatten(2).transpose(1, 2) for k, hv in hr.items()}
                pos = []
                for m in range(2):
                    v = lr_voxel[m][core].reshape(-1, 3)
                    fov = coords.voxel_to_normalized(v, x[m].shape)  # the whole LR volume's frame
                    pos.append(net.encoding_input(v, fov).float()[None])
                pred = net.decode_points(flat, pos[0], pos[1])["pred"][0].float().cpu().numpy()
                ext = stop - s0
                result[:, s0[0] : stop[0], s0[1] : stop[1], s0[2] : stop[2]] = np.moveaxis(
                    pred.reshape(*[int(e) for e in ext], 2), -1, 0
                )
    finally:
        net.train(was_training)
    for m in range(2):
        result[m] = result[m] * np.float32(stats[m][1]) + np.float32(stats[m][0])
    return result


def predict_subject(
    network: torch.nn.Module,
    t1w_lr: Any,
    t2w_lr: Any,
    output_shape: Sequence[int],
    output_affine: np.ndarray,
    device: str | torch.device = "cpu",
    tile_size: int = 32,
    memory_budget_gb: float | None = None,
    amp_bf16: bool | str = False,
    encoder_voxel_budget: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Super-resolve one subject onto a world grid: ``(t1w_hr, t2w_hr)`` float32 arrays of ``output_shape``.

    ``t1w_lr`` / ``t2w_lr``: NIfTI paths, ``(array, affine)`` pairs or MetaTensors (raw intensities; the result is
    in the same units). The grid is given by ``output_shape`` and ``output_affine`` (e.g. the ground truth's, or
    :func:`~monai_inr.coords.union_output_grid`); the inputs may be on any grids that overlap it.
    """
    in_ch = unwrap_network(network).in_channels
    a1 = _as_volume(t1w_lr, "t1w", in_ch)
    a2 = _as_volume(t2w_lr, "t2w", in_ch)
    out = predict_volume(network, a1[0], a1[1], a2[0], a2[1], output_shape, output_affine, device, tile_size,
                         memory_budget_gb, amp_bf16, encoder_voxel_budget)
    return out[0], out[1]


class NexusVolumeInferer(Inferer):
    """``inferer(t1w_lr, network, t2w_lr, output_shape, output_affine)`` -> MetaTensor ``(1, 2, *output_shape)``
    with the output affine, via :func:`predict_volume` (batch of one subject; LR tensors carry their affines)."""

    def __init__(
        self,
        tile_size: int = 32,
        memory_budget_gb: float | None = None,
        amp_bf16: bool | str = False,
        encoder_voxel_budget: int | None = None,
    ) -> None:
        super().__init__()
        self.tile_size, self.memory_budget_gb, self.amp_bf16 = int(tile_size), memory_budget_gb, amp_setting(amp_bf16)
        self.encoder_voxel_budget = encoder_voxel_budget

    def __call__(self, inputs, network, t2w_lr, output_shape, output_affine, *args, **kwargs) -> MetaTensor:
        if inputs.shape[0] != 1:
            raise ValueError(f"NexusVolumeInferer works on one subject at a time, got a batch of {inputs.shape[0]}.")
        a1 = np.asarray(inputs.affine.reshape(-1, 4, 4)[0], np.float64)
        a2 = np.asarray(t2w_lr.affine.reshape(-1, 4, 4)[0], np.float64)
        dev = next(unwrap_network(network).parameters()).device
        out = predict_volume(network, inputs[0].as_tensor(), a1, t2w_lr[0].as_tensor(), a2, output_shape, output_affine,
                             dev, self.tile_size, self.memory_budget_gb, self.amp_bf16, self.encoder_voxel_budget)
        return MetaTensor(torch.from_numpy(out)[None], affine=torch.as_tensor(output_affine))
