"""Nexus-INR training and inference engine pieces (Zhang et al., "Nexus-INR", arXiv:2508.03073, 2025).

Training runs in a MONAI ``SupervisedTrainer``: :class:`PrepareBatchNexus` hands the two LR patches and the query
points to :class:`~monai_inr.networks.nets.NexusINR` (through a ``SimpleInferer``) and the targets/labels to
:class:`~monai_inr.losses.NexusLoss` (eq. 26).

Inference and validation reconstruct whole volumes on any world grid (:func:`predict_volume`, used by
:class:`NexusVolumeInferer` in a ``SupervisedEvaluator`` and by :func:`predict_subject`, the entry point of the
evaluation):

1. both LR volumes are z-scored with their own statistics and encoded once (shared and specific maps), whole or,
   when the encoder's activations would exceed the memory budget, block-wise with a halo of the receptive radius
   (:func:`encode_tiled`, identical result);
2. the output grid is processed in cubic tiles (a multiple of the attention window, aligned to the grid origin, so
   the attention windows form one partition of the output grid whatever the tile size): the world position of every
   tile voxel is mapped into each modality's LR grid, the LR maps are sampled there trilinearly (the up-sampling of
   eq. 4-5 generalised to any output geometry), the windowed cross-attention runs on the tile, and every voxel is
   fused and decoded;
3. predictions are mapped back to each input's intensity units (inverse z-score).

The memory needed (LR feature maps, encoder workspace, tile working set and the output) is predicted before any work
(:func:`plan_memory`); a plan beyond the memory budget raises :class:`~monai_inr.io.InputError`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.engines import PrepareBatch
from monai.inferers import Inferer
from monai.transforms import MapTransform

from monai_inr import coords
from monai_inr.inferers.memory import GB, memory_budget_bytes
from monai_inr.io import InputError, atomic_path, check_volume
from monai_inr.networks.utils import unwrap_network
from monai_inr.transforms.nexus_sampling import zscore_stats

__all__ = [
    "PrepareBatchNexus",
    "PrepareBatchNexusVolume",
    "NexusVolumeInferer",
    "LoadNexusPaird",
    "NormalizeToLabeld",
    "SaveNexusOutputsd",
    "load_modality",
    "check_overlap",
    "union_output_grid",
    "check_datalist",
    "check_inference",
    "plan_memory",
    "encode_tiled",
    "predict_volume",
    "predict_subject",
    "MODALITIES",
]

MODALITIES = ("t1w", "t2w")


# ------------------------------------------------------------------------------------------------------ training


class PrepareBatchNexus(PrepareBatch):
    """``(t1w_lr, (t2w_lr, coord), {target, seg})`` for ``SupervisedTrainer``: ``network(t1w_lr, t2w_lr, coord)``
    and ``NexusLoss(outputs, {"target": ..., "seg": ...})``. ``seg`` is ``None`` when the batch has no labels."""

    def __call__(self, batchdata: Mapping[str, Any], device=None, non_blocking: bool = False, **kwargs):
        def mv(x):  # plain tensors: MetaTensor bookkeeping on every network op costs time and is not needed here
            x = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
            return x.to(device=device, non_blocking=non_blocking)

        t1, t2, c = mv(batchdata["t1w_lr"]).float(), mv(batchdata["t2w_lr"]).float(), mv(batchdata["coord"]).float()
        seg = mv(batchdata["seg"]) if "seg" in batchdata else None
        targets = {"target": mv(batchdata["target"]).float(), "seg": seg}
        return t1, targets, (t2, c), {}


def check_datalist(items: Sequence[Mapping[str, Any]], segmentation: bool = True, name: str = "datalist") -> list:
    """Every item has the files Nexus-INR training needs (and ``label`` when segmentation is on); returns ``items``.

    Raises:
        InputError: an empty split, a missing key, or a missing label with segmentation-enhanced learning on.
    """
    items = list(items)
    if not items:
        raise InputError(f"{name}: no items.")
    for it in items:
        sid = it.get("subject", "?")
        for k in ("t1w", "t2w", "t1w_lr", "t2w_lr"):
            if not it.get(k):
                raise InputError(f"{name}: item {sid} has no {k!r} file.")
        if segmentation and not it.get("label"):
            raise InputError(
                f"{name}: item {sid} has no 'label' file but segmentation-enhanced learning is on; add tumour labels "
                f"or run with --segmentation False."
            )
    return items


# ------------------------------------------------------------------------------------------------------ geometry


def load_modality(path: str | os.PathLike, name: str, in_channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Load one LR modality as ``(float32 (D, H, W), 4x4 affine)`` with one-sentence errors.

    Raises:
        InputError: missing/unreadable file, a channel count other than ``in_channels`` (a 4D image with several
            volumes), wrong dimensionality, NaN/Inf, a constant image or missing scanner geometry.
    """
    from monai_inr.engines.fitting import load_contrast

    p = Path(str(path))
    if not str(path).strip():
        raise InputError(f"{name}: no file given; pass --{name} <file.nii.gz>.")
    if p.is_file():
        try:
            shape = nib.load(str(p)).shape
        except Exception as e:
            raise InputError(f"{name} ({path}): not a readable NIfTI image ({type(e).__name__}).") from e
        channels = int(shape[3]) if len(shape) == 4 else 1
        if len(shape) in (3, 4) and channels != int(in_channels):
            raise InputError(
                f"{name} ({path}): has {channels} channels but the network expects {int(in_channels)} per modality "
                f"(mismatched channel counts)."
            )
    return load_contrast(path, name)


def check_overlap(shape1, affine1, shape2, affine2, names: Sequence[str] = ("t1w", "t2w")) -> float:
    """Fraction of modality 2's voxel centres inside modality 1's field of view; :class:`InputError` when zero."""
    frac = coords.fraction_inside_fov(shape2, affine2, shape1, affine1)
    if frac == 0.0:
        raise InputError(
            f"{names[0]} and {names[1]} do not overlap in scanner space (no voxel of one lies inside the other's field "
            f"of view); give two aligned scans of the same subject."
        )
    return frac


def union_output_grid(shape1, affine1, shape2, affine2, target_spacing) -> tuple[tuple[int, ...], np.ndarray]:
    """Grid over the union field of view of both inputs at ``target_spacing`` mm, oriented like the T1w input
    (:meth:`monai_inr.engines.fitting.SharedFrame.output_grid`)."""
    from monai_inr.engines.fitting import SharedFrame

    frame = SharedFrame.from_grids([(tuple(shape1), np.asarray(affine1)), (tuple(shape2), np.asarray(affine2))], 0)
    return frame.output_grid(target_spacing)


def _as_volume(x: Any, name: str, in_channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(array, affine)`` from a path, an ``(array, affine)`` pair or a MetaTensor ``([C,] D, H, W)``."""
    if isinstance(x, (str, os.PathLike)):
        return load_modality(x, name, in_channels)
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


# ------------------------------------------------------------------------------------------------------ memory


def plan_memory(
    network: torch.nn.Module,
    lr_shapes: Sequence[Sequence[int]],
    output_shape: Sequence[int],
    tile_size: int = 32,
    encoder_voxels: int | None = None,
    bytes_per_value: int = 4,
) -> dict[str, float]:
    """Predicted peak bytes of :func:`predict_volume`: LR feature maps, encoder workspace (whole volume, or tiles of
    ``encoder_voxels`` voxels including their halo), tile working set, output."""
    net = unwrap_network(network)
    c = net.feature_channels
    maps = 2 if net.dual_branch else 1
    n_lr = [int(np.prod(s)) for s in lr_shapes]
    enc_voxels = max(n_lr) if encoder_voxels is None else min(max(n_lr), int(encoder_voxels))
    t = int(tile_size) ** 3
    dec_h = net.decoders[0][0].out_features
    parts = {
        "feature_maps": float(maps * c * sum(n_lr) * bytes_per_value),
        "encoder_workspace": float(_encoder_channels(net) * enc_voxels * bytes_per_value),
        "tile": float(t * (12 * c + 4 * dec_h + 64) * bytes_per_value),
        "output": float(2 * int(np.prod(output_shape)) * 4 * 2),
    }
    parts["total"] = parts["feature_maps"] + max(parts["encoder_workspace"], parts["tile"]) + parts["output"]
    return parts


def _encoder_channels(net: torch.nn.Module) -> int:
    """Activation values alive per input voxel while encoding (the encoder's estimate plus the output maps)."""
    maps = 2 if net.dual_branch else 1
    return int(getattr(net.encoder_shared[0], "workspace_channels", 16 * 64)) + maps * net.feature_channels


def _min_encoder_voxels(net: torch.nn.Module, lr_shapes: Sequence[Sequence[int]], core: int = 8) -> int:
    r = int(net.receptive_radius)
    return max(int(np.prod([min(n, core + 2 * r) for n in s])) for s in lr_shapes)


def _plan_encoder_voxels(network, lr_shapes, output_shape, tile_size, memory_budget_gb, device, encoder_voxel_budget):
    """Largest encoder tile (voxels incl. halo) that fits the budget; :class:`InputError` when nothing fits."""
    net = unwrap_network(network)
    budget = memory_budget_bytes(memory_budget_gb, device)
    smallest = _min_encoder_voxels(net, lr_shapes)
    plan = plan_memory(net, lr_shapes, output_shape, tile_size, encoder_voxels=smallest)
    if plan["total"] > budget:
        raise InputError(
            f"the Nexus-INR output of shape {tuple(int(n) for n in output_shape)} needs about "
            f"{plan['total'] / GB:.2f} GB (LR feature maps {plan['feature_maps'] / GB:.2f} GB, output "
            f"{plan['output'] / GB:.2f} GB) but the memory budget is {budget / GB:.2f} GB; use a coarser target "
            f"spacing, smaller inputs or a larger memory_budget_gb."
        )
    rest = budget - plan["feature_maps"] - plan["output"]
    voxels = int(rest // (_encoder_channels(net) * 4))
    if encoder_voxel_budget is not None:  # an explicit cap (tests, benchmarks); blocks shrink to 8 voxels at least
        voxels = min(voxels, int(encoder_voxel_budget))
    return max(voxels, 1)


def _check_budget(network, lr_shapes, output_shape, tile_size, memory_budget_gb, device="cpu") -> None:
    _plan_encoder_voxels(network, lr_shapes, output_shape, tile_size, memory_budget_gb, device, None)


def encode_tiled(net: torch.nn.Module, x: torch.Tensor, m: int, max_voxels: int) -> torch.Tensor:
    """:meth:`NexusINR.encode_modality` of ``x`` ``(1, C, D, H, W)``, block-wise when the volume (with the halo) is
    above ``max_voxels``: each core block is encoded with a halo of ``receptive_radius`` voxels (clipped at the volume
    borders, where the encoders' zero padding applies as in the whole-volume run), so the result equals the untiled
    maps while only one block's activations are alive at a time."""
    shape = tuple(int(n) for n in x.shape[2:])
    if int(np.prod(shape)) <= max_voxels:
        return net.encode_modality(x, m)
    r = int(net.receptive_radius)
    core = list(shape)
    while int(np.prod([min(n, c + 2 * r) for n, c in zip(shape, core)])) > max_voxels and max(core) > 8:
        a = int(np.argmax(core))
        core[a] = max(8, (core[a] + 1) // 2)
    out = None
    for start in np.ndindex(*[int(math.ceil(n / c)) for n, c in zip(shape, core)]):
        lo = [s * c for s, c in zip(start, core)]
        hi = [min(n, a + c) for n, a, c in zip(shape, lo, core)]
        elo = [max(0, a - r) for a in lo]
        ehi = [min(n, b + r) for n, b in zip(shape, hi)]
        f = net.encode_modality(x[(slice(None), slice(None)) + tuple(slice(a, b) for a, b in zip(elo, ehi))], m)
        if out is None:
            out = torch.empty((1, f.shape[1], *shape), dtype=f.dtype, device=f.device)
        src = (slice(None), slice(None)) + tuple(slice(a - e, b - e) for a, b, e in zip(lo, hi, elo))
        out[(slice(None), slice(None)) + tuple(slice(a, b) for a, b in zip(lo, hi))] = f[src]
    return out


# ------------------------------------------------------------------------------------------------------ prediction


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
    amp_bf16: bool = False,
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
    check_overlap(x[0].shape, aff[0], x[1].shape, aff[1])
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
    amp = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bool(amp_bf16))
    try:
        with torch.inference_mode(), amp:
            xt = [torch.from_numpy((v - s[0]) / s[1]).float()[None, None].to(device) for v, s in zip(x, stats)]
            lr_keys = [net.map_names(m) for m in range(2)]
            lr_maps = []
            for m in range(2):
                lr_maps.append(encode_tiled(net, xt[m], m, enc_voxels).float())
            del xt
            local = np.stack(np.meshgrid(*[np.arange(tile, dtype=np.float64)] * 3, indexing="ij"), -1).reshape(-1, 3)
            to_lr = [np.linalg.solve(a, out_aff) for a in aff]  # output voxel -> LR voxel, per modality
            for start in np.ndindex(*[int(math.ceil(n / tile)) for n in out_shape]):
                s0 = np.asarray(start) * tile
                ijk = local + s0
                z: dict[str, torch.Tensor] = {}
                pos = []
                for m in range(2):
                    v = ijk @ to_lr[m][:3, :3].T + to_lr[m][:3, 3]
                    vt = torch.from_numpy(v).to(device)
                    n = coords.voxel_to_normalized(vt, x[m].shape).float()[None]
                    feats = coords.sample_features(lr_maps[m], n)[0]  # (T^3, C_m)
                    for k, f in zip(lr_keys[m], torch.split(feats, net.feature_channels, dim=-1)):
                        z[k] = f.T.reshape(1, -1, tile, tile, tile)
                    pos.append(vt.float()[None])
                hr = net.attend(z)
                flat = {k: hv.flatten(2).transpose(1, 2) for k, hv in hr.items()}
                pred = net.decode_points(flat, pos[0], pos[1])["pred"][0].float().cpu().numpy()  # (T^3, 2)
                pred = pred.reshape(tile, tile, tile, 2)
                stop = np.minimum(s0 + tile, out_shape)
                ext = stop - s0
                result[:, s0[0] : stop[0], s0[1] : stop[1], s0[2] : stop[2]] = np.moveaxis(
                    pred[: ext[0], : ext[1], : ext[2]], -1, 0
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
    amp_bf16: bool = False,
    encoder_voxel_budget: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Super-resolve one subject onto a world grid: ``(t1w_hr, t2w_hr)`` float32 arrays of ``output_shape``.

    ``t1w_lr`` / ``t2w_lr``: NIfTI paths, ``(array, affine)`` pairs or MetaTensors (raw intensities; the result is
    in the same units). The grid is given by ``output_shape`` and ``output_affine`` (e.g. the ground truth's, or
    :func:`union_output_grid`); the inputs may be on any grids that overlap it.
    """
    in_ch = unwrap_network(network).in_channels
    a1 = _as_volume(t1w_lr, "t1w", in_ch)
    a2 = _as_volume(t2w_lr, "t2w", in_ch)
    out = predict_volume(network, a1[0], a1[1], a2[0], a2[1], output_shape, output_affine, device, tile_size,
                         memory_budget_gb, amp_bf16, encoder_voxel_budget)
    return out[0], out[1]


# ------------------------------------------------------------------------------------------------------ evaluator


class LoadNexusPaird(MapTransform):
    """Load the two LR inputs (and optionally the HR references) for whole-volume prediction.

    Output: ``t1w_lr``, ``t2w_lr`` MetaTensors ``(D, H, W)`` with their affines; ``output_shape`` and
    ``output_affine`` (the grid of ``reference_keys[0]`` when given, else :func:`union_output_grid` at
    ``target_spacing``); with ``reference_keys`` also ``reference`` ``(2, *shape)`` (the stacked HR T1w, T2w).
    """

    def __init__(
        self,
        lr_keys: Sequence[str] = ("t1w_lr", "t2w_lr"),
        reference_keys: Sequence[str] | None = None,
        target_spacing: float | Sequence[float] | None = None,
        in_channels: int = 1,
    ) -> None:
        super().__init__(list(lr_keys))
        self.lr_keys = list(lr_keys)
        self.reference_keys = list(reference_keys) if reference_keys else None
        self.target_spacing = target_spacing
        self.in_channels = int(in_channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        vols = [load_modality(d[k], m, self.in_channels) for k, m in zip(self.lr_keys, MODALITIES)]
        names = [f"{m} ({d[k]})" for k, m in zip(self.lr_keys, MODALITIES)]
        check_overlap(vols[0][0].shape, vols[0][1], vols[1][0].shape, vols[1][1], names=names)
        for k, (arr, aff) in zip(self.lr_keys, vols):
            d[k] = MetaTensor(torch.from_numpy(arr), affine=torch.as_tensor(aff))
        if self.reference_keys:
            refs = [load_modality(d[k], k) for k in self.reference_keys]
            stacked = torch.from_numpy(np.stack([r[0] for r in refs]))
            d["reference"] = MetaTensor(stacked, affine=torch.as_tensor(refs[0][1]))
            shape, affine = refs[0][0].shape, refs[0][1]
        else:
            shape, affine = union_output_grid(
                vols[0][0].shape, vols[0][1], vols[1][0].shape, vols[1][1], self.target_spacing
            )
        d["output_shape"] = torch.tensor(shape, dtype=torch.long)
        d["output_affine"] = torch.as_tensor(np.asarray(affine, np.float64))
        return d


class PrepareBatchNexusVolume(PrepareBatch):
    """``(t1w_lr, reference or None, (t2w_lr, output_shape, output_affine), {})`` from a batch of one subject (the
    stacked HR references become the evaluator's ``label``)."""

    def __call__(self, batchdata: Mapping[str, Any], device=None, non_blocking: bool = False, **kwargs):
        t1, t2 = batchdata["t1w_lr"], batchdata["t2w_lr"]
        shape = tuple(int(n) for n in torch.as_tensor(batchdata["output_shape"]).reshape(-1, 3)[0])
        affine = torch.as_tensor(batchdata["output_affine"]).reshape(-1, 4, 4)[0].double().cpu().numpy()
        return t1, batchdata.get("reference"), (t2, shape, affine), {}


class NexusVolumeInferer(Inferer):
    """``inferer(t1w_lr, network, t2w_lr, output_shape, output_affine)`` -> MetaTensor ``(1, 2, *output_shape)``
    with the output affine, via :func:`predict_volume` (batch of one subject; LR tensors carry their affines)."""

    def __init__(
        self,
        tile_size: int = 32,
        memory_budget_gb: float | None = None,
        amp_bf16: bool = False,
        encoder_voxel_budget: int | None = None,
    ) -> None:
        super().__init__()
        self.tile_size, self.memory_budget_gb, self.amp_bf16 = int(tile_size), memory_budget_gb, bool(amp_bf16)
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


class NormalizeToLabeld(MapTransform):
    """Map ``pred`` and ``label`` ``(C, ...)`` to [0, 1] with the label's per-channel min/max; clip ``pred``
    (evaluation protocol of ``notes/methods.md`` section 8: the ground truth's range, never the prediction's)."""

    def __init__(self, keys=("pred", "label"), reference_key: str = "label") -> None:
        super().__init__(keys)
        self.reference_key = reference_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ref = torch.as_tensor(d[self.reference_key]).float()
        lo = ref.flatten(1).min(dim=1).values.reshape(-1, *[1] * (ref.ndim - 1))
        hi = ref.flatten(1).max(dim=1).values.reshape(-1, *[1] * (ref.ndim - 1))
        for k in self.key_iterator(d):
            v = (torch.as_tensor(d[k]).float() - lo) / (hi - lo).clamp_min(1e-12)
            d[k] = v.clamp(0.0, 1.0) if k != self.reference_key else v
        return d


class SaveNexusOutputsd(MapTransform):
    """Write ``pred`` ``(2, *shape)`` as ``<output_dir>/<name>_<postfix>.nii.gz`` per modality with the pred affine.

    Both files are written under temporary names first and renamed only when both are complete.
    """

    def __init__(self, keys="pred", output_dir: str = "./eval/inference", names: Sequence[str] = MODALITIES,
                 output_postfix: str = "sr", output_ext: str = ".nii.gz") -> None:
        super().__init__(keys)
        self.output_dir, self.names, self.postfix, self.ext = Path(output_dir), list(names), output_postfix, output_ext

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            affine = np.asarray(pred.affine, np.float64).reshape(-1, 4, 4)[-1]
            arr = pred.detach().cpu().numpy().reshape(-1, *pred.shape[-3:])
            self.output_dir.mkdir(parents=True, exist_ok=True)
            done = []
            try:
                for c, name in enumerate(self.names):
                    final = self.output_dir / f"{name}_{self.postfix}{self.ext}"
                    tmp, _ = atomic_path(final)
                    img = nib.Nifti1Image(arr[c].astype(np.float32), affine)
                    img.set_qform(affine, code=1)
                    img.set_sform(affine, code=1)
                    nib.save(img, str(tmp))
                    done.append((tmp, final))
                for tmp, final in done:
                    os.replace(tmp, final)
            finally:
                for tmp, _ in done:
                    if tmp.exists():
                        tmp.unlink()
        return d


def check_inference(network: torch.nn.Module, t1w: str, t2w: str, target_spacing, tile_size: int = 32,
                    memory_budget_gb: float | None = None) -> tuple[tuple[int, ...], np.ndarray]:
    """Everything an inference run checks before any work: inputs, overlap, spacing, memory plan; returns the grid."""
    from monai_inr.engines.checks import validate_scale

    validate_scale(None, target_spacing)
    in_ch = unwrap_network(network).in_channels
    (x1, a1), (x2, a2) = load_modality(t1w, "t1w", in_ch), load_modality(t2w, "t2w", in_ch)
    check_overlap(x1.shape, a1, x2.shape, a2, names=(f"t1w ({t1w})", f"t2w ({t2w})"))
    shape, affine = union_output_grid(x1.shape, a1, x2.shape, a2, target_spacing)
    device = next(unwrap_network(network).parameters()).device
    _check_budget(network, [x1.shape, x2.shape], shape, tile_size, memory_budget_gb, device)
    return shape, affine
