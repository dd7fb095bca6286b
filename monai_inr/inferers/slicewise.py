"""Slice-wise inference for 2D multi-contrast super-resolution networks (a target and a reference of any grid).

2D methods such as Dual-ArbNet (Zhang et al., MICCAI 2023) and ArRFR (Yang, 2025) super-resolve one in-plane slice at a
time with the help of a reference contrast. :class:`SliceWiseInferer` turns such a network into a volume (or single
slice) inferer:

* the **target** is ``(B, C, H, W)`` (one slice per item) or ``(B, C, D0, D1, D2)`` (super-resolved slice by slice in
  the plane normal to ``slice_axis``; the through-plane axis keeps its size);
* the **reference** may have any grid: when both inputs are MetaTensors their affines map every output pixel centre
  through world (scanner) coordinates into the reference (:mod:`monai_inr.coords`). The reference must be sliced in
  the same plane orientation (its slice normal parallel to the target's), the nearest reference slice is used, and the
  in-plane position of every output pixel in the reference slice is passed to the network as ``ref_coord`` (``None``
  when the reference covers exactly the target's in-plane FOV on aligned axes). Without affines the two are assumed to
  cover the same FOV with the same slices;
* the output covers the target's field of view: ``round(N * s)`` pixels per in-plane axis and the affine of
  :func:`monai_inr.coords.fov_affine` (FOV centre kept), so saving it needs no geometry fix.

Bad input fails before any work with one :class:`~monai_inr.errors.InputError` sentence: different channel counts, a
reference that does not cover the target's FOV (or is sliced in another plane), a scale below ``min_scale`` (1) or
above ``max_scale``, an output beyond the memory budget.

Network protocol (:class:`ReferenceSliceNetwork`): ``network(image, reference, output_shape=(H, W), ref_coord=...,
ref_scale=...)`` -> ``(n, C_out, H, W)``; without a reference ``network(image, output_shape=(H, W))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from monai_inr import coords
from monai_inr.errors import InputError
from monai_inr.inferers.memory import check_memory, estimate_peak_bytes, memory_budget_bytes
from monai_inr.networks.utils import unwrap_network
from monai_inr.inferers.precision import amp_setting, resolve_amp_bf16

__all__ = ["ReferenceSliceNetwork", "SliceWiseInferer", "ReferencePlan", "plan_reference", "validate_scale_range"]



@runtime_checkable
class ReferenceSliceNetwork(Protocol):
    """``network(image (n, C, h, w), reference (n, C, h_r, w_r), output_shape=(H, W), ref_coord=None | (n|1, H, W, 2),
    ref_scale=None | float) -> (n, C_out, H, W)``; optional attributes ``out_channels``, ``use_reference`` and
    ``decode_workspace_channels`` (float values alive per output pixel, for the memory check)."""

    def __call__(self, image: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor: ...


def validate_scale_range(
    scale: Any, min_scale: float = 1.0, max_scale: float | None = None, ndim: int = 2, name: str = "scale"
) -> tuple[float, ...]:
    """Per-axis scales within ``[min_scale, max_scale]``, else an :class:`~monai_inr.errors.InputError` sentence."""
    if scale is None:
        raise InputError(f"no {name} given; pass --{name} <factor> (e.g. 2.0).")
    try:
        values = coords.as_scale_tuple(scale, ndim, name=name)
    except (ValueError, TypeError) as e:
        raise InputError(str(e)) from None
    if min(values) < min_scale:
        raise InputError(
            f"{name} {values} is below {min_scale:g}: this network super-resolves (scale >= {min_scale:g}), it "
            f"does not downsample."
        )
    if max_scale is not None and max(values) > max_scale:
        raise InputError(f"{name} {values} exceeds the supported maximum of {max_scale:g} per axis.")
    return values


@dataclass
class ReferencePlan:
    """Where each target slice finds its reference: ``slice_index[k]`` along ``axis`` of the reference volume,
    ``ref_coord`` ``(H, W, 2)`` (``None`` = same in-plane FOV) and the reference-to-output scale ``ref_scale``."""

    axis: int
    slice_index: list[int]
    ref_coord: torch.Tensor | None
    ref_scale: float | None


def _affine(x: Any, b: int) -> np.ndarray:
    a = x.affine
    a = a[b] if a.ndim == 3 else a
    return np.asarray(a.detach().cpu(), dtype=np.float64)


def _pad4(a: np.ndarray) -> np.ndarray:
    if a.shape == (4, 4):
        return a
    out = np.eye(4)
    r = a.shape[0] - 1
    out[:r, :r], out[:r, 3] = a[:r, :r], a[:r, r]
    return out


def plan_reference(
    target_shape: Sequence[int],
    target_affine: np.ndarray,
    out_shape: Sequence[int],
    reference_shape: Sequence[int],
    reference_affine: np.ndarray,
    slice_axis: int,
    tolerance: float = 1e-3,
    what: str = "reference",
    coordinates: bool = True,
) -> ReferencePlan:
    """Map the output grid of the target (3D shapes, 4x4 affines) into the reference; see the module docstring.

    ``coordinates=False`` checks the plane and the coverage and finds the slice indices without building the
    ``(H, W, 2)`` reference coordinates of the output grid (a pre-flight check allocates nothing of the output's size;
    ``ref_coord`` and ``ref_scale`` are then ``None``).

    Raises:
        InputError: the reference is sliced in another plane or does not cover the target's field of view (every
            target slice's in-plane FOV, at the slice centres, must lie inside the reference's FOV within
            ``tolerance`` reference voxels).
    """
    ta, ra = _pad4(target_affine), _pad4(reference_affine)
    plane = [d for d in range(3) if d != slice_axis]
    normal = ta[:3, slice_axis] / np.linalg.norm(ta[:3, slice_axis])
    cosines = [abs(float(ra[:3, d] @ normal) / np.linalg.norm(ra[:3, d])) for d in range(3)]
    r_axis = int(np.argmax(cosines))
    r_plane = [d for d in range(3) if d != r_axis]
    in_plane_ok = all(abs(float(ra[:3, d] @ normal)) / np.linalg.norm(ra[:3, d]) < 1e-4 for d in r_plane)
    if cosines[r_axis] < 1 - 1e-6 or not in_plane_ok:
        raise InputError(
            f"the {what} is not sliced in the target's plane (its slices are not parallel to the target's axis-"
            f"{slice_axis} slices); resample it to the target's orientation first."
        )
    # coverage: target in-plane FOV corners at the first and last slice centres
    n = [int(v) for v in target_shape]
    corners = []
    for k in (0, n[slice_axis] - 1):
        for e0 in (-0.5, n[plane[0]] - 0.5):
            for e1 in (-0.5, n[plane[1]] - 0.5):
                v = [0.0, 0.0, 0.0]
                v[slice_axis], v[plane[0]], v[plane[1]] = float(k), e0, e1
                corners.append(v)
    rv = coords.world_to_voxel(coords.voxel_to_world(np.asarray(corners), ta), ra)
    lo = -0.5 - tolerance
    hi = np.asarray(reference_shape, dtype=np.float64) - 0.5 + tolerance
    if np.any(rv < lo) or np.any(rv > hi[None, :]):
        raise InputError(
            f"the {what} does not cover the target's field of view (target corners fall outside it by up to "
            f"{float(np.max(np.maximum(lo - rv, rv - hi[None, :]))):.3g} {what} voxels); give a {what} that covers "
            f"the target, or crop the target."
        )
    # slice indices
    centres = np.zeros((n[slice_axis], 3))
    centres[:, slice_axis] = np.arange(n[slice_axis])
    for d in plane:
        centres[:, d] = (n[d] - 1) / 2.0
    rc = coords.world_to_voxel(coords.voxel_to_world(centres, ta), ra)[:, r_axis]
    idx = [int(min(max(np.floor(v + 0.5), 0), reference_shape[r_axis] - 1)) for v in rc]
    if not coordinates:
        return ReferencePlan(r_axis, idx, None, None)
    # in-plane positions of the output pixel centres (slice 0; the map is the same for every slice)
    oa = coords.fov_affine(ta, n, out_shape)
    hh, ww = int(out_shape[plane[0]]), int(out_shape[plane[1]])
    grid = np.zeros((hh, ww, 3))
    grid[..., plane[0]] = np.arange(hh)[:, None]
    grid[..., plane[1]] = np.arange(ww)[None, :]
    rvox = coords.world_to_voxel(coords.voxel_to_world(grid.reshape(-1, 3), oa), ra)
    ref_plane_shape = [int(reference_shape[d]) for d in r_plane]
    rc2 = coords.voxel_to_normalized(rvox[:, r_plane], ref_plane_shape).reshape(hh, ww, 2)
    same = coords.normalized_grid((hh, ww), flatten=False, dtype=torch.float64).numpy()
    ref_coord = None if np.max(np.abs(rc2 - same)) < 1e-6 else torch.as_tensor(rc2, dtype=torch.float32)
    ref_area = float(np.linalg.norm(np.cross(ra[:3, r_plane[0]], ra[:3, r_plane[1]])))
    out_area = float(np.linalg.norm(np.cross(oa[:3, plane[0]], oa[:3, plane[1]])))
    return ReferencePlan(r_axis, idx, ref_coord, float(np.sqrt(ref_area / out_area)))


class SliceWiseInferer(Inferer):
    """Super-resolve a target slice or volume slice by slice with a 2D (multi-contrast) network.

    Args:
        scale: default in-plane up-sampling factor (one number or one per in-plane axis).
        slice_axis: spatial axis (0-2) normal to the processed planes for volume inputs (2D inputs have one plane).
        min_scale, max_scale: allowed scale range (``max_scale=None``: no upper limit).
        slices_per_batch: slices per network call (equal shapes within a volume make this safe).
        amp_bf16: bf16 autocast for the network calls: ``True``, ``False`` or ``"auto"`` (where bf16 is native,
            :func:`~monai_inr.inferers.precision.native_bf16`).
        memory_budget_gb: peak resident memory allowed (``None``: 6 GB or what the machine has); an output that would
            not fit is an :class:`~monai_inr.errors.InputError` before any work.
        fov_tolerance: reference voxels by which the target FOV may exceed the reference FOV (rounding).
        require_reference: raise when the network uses a reference but none is given (otherwise the network's own
            default applies).
        channels_last: run the network's convolutions channels-last (converts its weights' memory format in place,
            values unchanged; about 15 % faster on CPU).

    Call ``inferer(inputs, network, reference, scale=..., output_shape=...)``: ``output_shape`` (the in-plane shape)
    fixes the grid exactly (evaluation against a label); ``scale`` overrides the constructor's.
    """

    def __init__(
        self,
        scale: float | Sequence[float] | None = None,
        slice_axis: int = 2,
        min_scale: float = 1.0,
        max_scale: float | None = None,
        slices_per_batch: int = 1,
        amp_bf16: bool | str = False,
        memory_budget_gb: float | None = None,
        fov_tolerance: float = 1e-3,
        require_reference: bool = True,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if int(slice_axis) not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis}.")
        if int(slices_per_batch) < 1:
            raise ValueError(f"slices_per_batch must be >= 1, got {slices_per_batch}.")
        self.scale = scale
        self.slice_axis = int(slice_axis)
        self.min_scale = float(min_scale)
        self.max_scale = None if max_scale is None else float(max_scale)
        self.slices_per_batch = int(slices_per_batch)
        self.amp_bf16 = amp_setting(amp_bf16)
        self.memory_budget_gb = memory_budget_gb
        self.fov_tolerance = float(fov_tolerance)
        self.require_reference = bool(require_reference)
        self.channels_last = bool(channels_last)

    # ------------------------------------------------------------------------------------------------ checks
    def _budget(self) -> float:
        return memory_budget_bytes(self.memory_budget_gb)

    def _check_memory(self, network: Any, batch: int, out_ch: int, out_shape3: Sequence[int], plane: Sequence[int]):
        n_plane = int(out_shape3[plane[0]] * out_shape3[plane[1]])
        need = estimate_peak_bytes(
            network,
            output_values=batch * out_ch * float(np.prod(out_shape3)),
            queries=n_plane * self.slices_per_batch,
        )
        check_memory(
            need, self._budget(), f"the output grid {'x'.join(map(str, out_shape3))}",
            "lower the scale or raise memory_budget_gb",
        )

    # ------------------------------------------------------------------------------------------------ main
    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: Any,
        reference: torch.Tensor | None = None,
        *args: Any,
        scale: float | Sequence[float] | None = None,
        output_shape: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> MetaTensor:
        if not isinstance(inputs, torch.Tensor) or inputs.ndim not in (4, 5):
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            raise InputError(f"SliceWiseInferer expects a (B, C, H, W) or (B, C, D0, D1, D2) target, got {shape}.")
        network = unwrap_network(network)
        uses_ref = bool(getattr(network, "use_reference", True))
        if reference is not None:
            if not isinstance(reference, torch.Tensor) or reference.ndim not in (4, 5):
                raise InputError(f"the reference must be a (B, C, H, W) or (B, C, D0, D1, D2) image, got "
                                 f"{tuple(getattr(reference, 'shape', ()))}.")
            if reference.shape[1] != inputs.shape[1]:
                raise InputError(
                    f"the target has {inputs.shape[1]} channel(s) but the reference has {reference.shape[1]}; both "
                    f"must be magnitude (1 channel) or both complex (2 channels)."
                )
            if reference.shape[0] != inputs.shape[0]:
                raise InputError(f"{inputs.shape[0]} target(s) but {reference.shape[0]} reference(s).")
        elif uses_ref and self.require_reference:
            raise InputError("this network needs a reference image; pass --reference_image <file>.")
        two_d = inputs.ndim == 4
        axis = 2 if two_d else self.slice_axis
        tgt = inputs.unsqueeze(-1) if two_d else inputs
        ref = None
        if reference is not None and uses_ref:
            ref = reference.unsqueeze(-1) if reference.ndim == 4 else reference
        in_shape3 = tuple(int(s) for s in tgt.shape[2:])
        plane = [d for d in range(3) if d != axis]

        if output_shape is not None:
            o = [int(v) for v in np.asarray(output_shape).reshape(-1)]
            if len(o) == 3:
                o = [o[d] for d in plane]
            if len(o) != 2 or min(o) < 1:
                raise InputError(f"output_shape must be the two in-plane sizes, got {output_shape}.")
            s_plane = (o[0] / in_shape3[plane[0]], o[1] / in_shape3[plane[1]])
            validate_scale_range(s_plane, self.min_scale, None, name="output_shape / input shape")
            out_plane = tuple(o)
        else:
            s_plane = validate_scale_range(self.scale if scale is None else scale, self.min_scale, self.max_scale)
            out_plane = coords.scaled_shape([in_shape3[d] for d in plane], s_plane)
        out_shape3 = list(in_shape3)
        out_shape3[plane[0]], out_shape3[plane[1]] = out_plane
        out_shape3 = tuple(out_shape3)

        batch = int(tgt.shape[0])
        out_ch = int(getattr(network, "out_channels", tgt.shape[1]))
        has_affines = isinstance(inputs, MetaTensor)
        # the memory check comes before any allocation of the output size (the reference plans' coordinate grids
        # and the output itself): an absurd scale is one sentence, not the OOM killer
        self._check_memory(network, batch, out_ch, out_shape3, plane)
        plans: list[ReferencePlan | None] = []
        for b in range(batch):
            if ref is None:
                plans.append(None)
            elif has_affines and isinstance(reference, MetaTensor):
                plans.append(
                    plan_reference(
                        in_shape3, _affine(inputs, b), out_shape3, tuple(ref.shape[2:]), _affine(reference, b), axis,
                        self.fov_tolerance,
                    )
                )
            else:
                n_ref = int(ref.shape[2 + axis])
                if n_ref != in_shape3[axis]:
                    raise InputError(
                        f"the reference has {n_ref} slices along axis {axis} but the target {in_shape3[axis]}; without "
                        f"affines they must have the same slices."
                    )
                plans.append(ReferencePlan(axis, list(range(n_ref)), None, None))

        device = tgt.device
        t_data = tgt.as_tensor() if isinstance(tgt, MetaTensor) else tgt
        r_data = None if ref is None else (ref.as_tensor() if isinstance(ref, MetaTensor) else ref)
        out = torch.empty((batch, out_ch, *out_shape3), dtype=torch.float32, device=device)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        if self.channels_last and isinstance(network, torch.nn.Module):
            network.to(memory_format=torch.channels_last)
        amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve_amp_bf16(self.amp_bf16, device))
        n_slices = in_shape3[axis]
        with torch.inference_mode(), amp:
            for b in range(batch):
                plan = plans[b]
                for k0 in range(0, n_slices, self.slices_per_batch):
                    ks = list(range(k0, min(n_slices, k0 + self.slices_per_batch)))
                    img = torch.stack([t_data[b].select(1 + axis, k) for k in ks]).contiguous(memory_format=fmt)
                    call_kw = dict(kwargs)
                    call_kw["output_shape"] = tuple(out_plane)
                    if plan is not None and r_data is not None:
                        rax = plan.axis
                        refs = torch.stack([r_data[b].select(1 + rax, plan.slice_index[k]) for k in ks])
                        refs = refs.contiguous(memory_format=fmt)
                        if plan.ref_coord is not None:
                            call_kw["ref_coord"] = plan.ref_coord.to(device)[None]
                        if plan.ref_scale is not None:
                            call_kw["ref_scale"] = plan.ref_scale
                        pred = network(img, refs, *args, **call_kw)
                    else:
                        pred = network(img, *args, **call_kw)
                    for i, k in enumerate(ks):
                        out[b].select(1 + axis, k).copy_(pred[i].float())

        out_affine = None
        if isinstance(inputs, MetaTensor):
            affs = []
            for b in range(batch):
                a = _pad4(_affine(inputs, b))
                affs.append(coords.fov_affine(a, in_shape3, out_shape3))
            out_affine = torch.as_tensor(np.stack(affs) if inputs.affine.ndim == 3 else affs[0], dtype=torch.float64)
        if two_d:
            out = out[..., 0]
        meta = dict(inputs.meta) if isinstance(inputs, MetaTensor) else {}
        for k in ("affine", "original_affine"):
            meta.pop(k, None)
        meta.update(
            {
                "spatial_shape": np.asarray(out.shape[2:]),
                "sr_scale": tuple(float(v) for v in s_plane),
                "sr_input_shape": tuple(in_shape3[: 2 if two_d else 3]),
                "sr_slice_axis": axis,
            }
        )
        res = MetaTensor(out, affine=out_affine, meta=meta) if out_affine is not None else MetaTensor(out, meta=meta)
        if isinstance(inputs, MetaTensor):
            res.is_batch = inputs.is_batch
        return res
