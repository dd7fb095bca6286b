"""Whole-volume inference for implicit (encoder + point-wise decoder) networks at an arbitrary output resolution.

The LR volume is encoded once; the output grid is generated chunk by chunk (never materialised as a whole) and decoded
in chunks of ``chunk_size`` queries. When the input is larger than ``voxel_budget`` (or than what the memory budget
allows), the encoder runs block-wise: the LR volume is split into core tiles, each tile is encoded with a halo of
``receptive_radius + 1`` voxels (clipped at the volume borders), and the output voxels whose trilinear lookup falls in
that core are decoded right away from the tile's own features. The full-size feature map is never held in memory, and
the result equals the untiled run up to floating-point rounding.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np
import psutil
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from monai_inr import coords
from monai_inr.errors import InputError
from monai_inr.inferers.memory import (
    GB,
    encoder_bytes_per_voxel,
    estimate_peak_bytes,
    memory_budget_bytes,
    memory_error,
)
from monai_inr.inferers.precision import amp_setting, resolve_amp_bf16
from monai_inr.networks.utils import unwrap_network

__all__ = ["ImplicitNetwork", "ImplicitInferer", "TilePlan", "plan_tiles"]



@runtime_checkable
class ImplicitNetwork(Protocol):
    """What :class:`ImplicitInferer` needs from a network.

    Required:
        * ``encode(image)``: ``(B, C_in, *spatial)`` -> a feature grid ``(B, C_feat, *spatial)`` (same spatial size).
        * ``decode(features, coord, lookup_coord=None)``: ``coord`` ``(B, K, ndim)`` are absolute cell-centred
          normalised (i, j, k) coordinates in the frame of the whole input; ``lookup_coord`` (same shape) are the same
          points in the frame of ``features`` when ``features`` covers only a tile (``None``: the frames coincide).
          Returns ``(B, K, C_out)``.

    Optional attributes (read with ``getattr``):
        * ``receptive_radius: int``: voxels of context per side for an exact feature vector. Without it the encoder is
          never tiled.
        * ``out_channels: int`` (default 1), ``encode_workspace_channels: int`` (peak activation values alive per input
          voxel while encoding, default ``16 * 64``) and ``decode_workspace_channels: int`` (per query, default 1024):
          used to predict memory before any work.
    """

    def encode(self, image: torch.Tensor) -> Any: ...

    def decode(self, features: Any, coord: torch.Tensor, lookup_coord: torch.Tensor | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class TilePlan:
    """Block-wise encoding plan over the LR grid.

    ``cores[d]`` / ``regions[d]``: per axis ``d``, the ``(start, stop)`` of each core tile and of its encoded region
    (core + halo, clipped). Tiles are the Cartesian product over axes.
    """

    cores: tuple[tuple[tuple[int, int], ...], ...]
    regions: tuple[tuple[tuple[int, int], ...], ...]
    max_tile_voxels: int
    encoded_voxels: int

    @property
    def num_tiles(self) -> int:
        return int(np.prod([len(c) for c in self.cores]))


def _axis_splits(n: int, halo: int) -> list[tuple[int, int, int, int]]:
    """Pareto-optimal splits of one axis of length ``n``: ``(num, core, max_extent, sum_extent)``."""
    seen: dict[int, tuple[int, int, int, int]] = {}
    for k in range(1, n + 1):
        core = math.ceil(n / k)
        k_eff = math.ceil(n / core)
        if k_eff in seen:
            continue
        ext = [min(n, s + core + halo) - max(0, s - halo) for s in range(0, n, core)]
        seen[k_eff] = (k_eff, core, max(ext), sum(ext))
    front, best = [], None
    for opt in sorted(seen.values(), key=lambda o: (o[2], o[3])):
        if best is None or opt[3] < best:
            front.append(opt)
            best = opt[3]
    return front


def plan_tiles(shape: Sequence[int], halo: int, max_voxels: int) -> TilePlan | None:
    """Split ``shape`` into core tiles so that every encoded tile (core + ``halo`` per side, clipped at the borders)
    has at most ``max_voxels`` voxels, minimising the total number of encoded voxels (ties: fewer tiles).

    Returns ``None`` when no split satisfies ``max_voxels``.
    """
    options = [_axis_splits(int(n), int(halo)) for n in shape]
    best_key, best = None, None
    for combo in itertools.product(*options):
        tile = int(np.prod([o[2] for o in combo]))
        if tile > max_voxels:
            continue
        key = (int(np.prod([o[3] for o in combo])), int(np.prod([o[0] for o in combo])))
        if best_key is None or key < best_key:
            best_key, best = key, combo
    if best is None:
        return None
    cores, regions = [], []
    for n, (_, core, _, _) in zip(shape, best):
        c = tuple((s, min(n, s + core)) for s in range(0, n, core))
        cores.append(c)
        regions.append(tuple((max(0, a - halo), min(n, b + halo)) for a, b in c))
    return TilePlan(tuple(cores), tuple(regions), int(np.prod([o[2] for o in best])), best_key[0])


def _out_start(a: int, n: int, m: int) -> int:
    """First output index (of ``m`` over the same FOV as ``n`` inputs) whose LR position ``u`` has ``floor(u) >= a``.

    ``u(j) = (2j + 1) n / (2m) - 1/2``; ``u >= a`` <=> ``j >= ((2a + 1) m - n) / (2n)``, in exact integer arithmetic.
    """
    if a <= 0:
        return 0
    num = (2 * a + 1) * m - n
    return min(m, max(0, -((-num) // (2 * n))))


def _flat_coords(first: torch.Tensor, rest: torch.Tensor, start: int, stop: int, batch: int) -> torch.Tensor:
    """Coordinates ``(batch, stop - start, ndim)`` of the flat (C-order) index range ``start:stop`` of the
    tensor-product grid ``first (n0,) x rest (P, ndim-1)``: a partial first plane, whole planes, a partial last plane."""
    plane = rest.shape[0]
    q = torch.empty((stop - start, rest.shape[1] + 1), dtype=rest.dtype, device=rest.device)
    pos = start
    while pos < stop:
        i, off = divmod(pos, plane)
        if off == 0 and stop - pos >= plane:  # whole planes
            r = (stop - pos) // plane
            view = q[pos - start : pos - start + r * plane].view(r, plane, -1)
            view[:, :, 0] = first[i : i + r, None]
            view[:, :, 1:] = rest[None]
            pos += r * plane
        else:  # part of one plane
            end = min(stop, (i + 1) * plane)
            piece = q[pos - start : end - start]
            piece[:, 0] = first[i]
            piece[:, 1:] = rest[off : off + end - pos]
            pos = end
    return q.unsqueeze(0).expand(batch, -1, -1)


def _per_item(value: Any, batch: int) -> Any:
    if value is None or isinstance(value, (int, float, str, np.number)):
        return [value] * batch
    return torch.as_tensor(np.asarray(value, dtype=np.float64))[None].repeat(batch, *([1] * np.ndim(value)))


def _format(shape: Sequence[int]) -> str:
    return "x".join(str(int(s)) for s in shape)


class ImplicitInferer(Inferer):
    """Super-resolve a whole image with an implicit network at an arbitrary scale, target spacing or output shape.

    The output grid covers the input field of view (cell-centred, ``round(N * s)`` voxels per axis; :mod:`monai_inr.coords`),
    and the returned :class:`~monai.data.MetaTensor` carries the matching affine
    (:func:`monai_inr.coords.fov_affine`), so saving it needs no further geometry fix.

    Args:
        scale: default output/input voxels per axis (one number or one per spatial axis).
        target_spacing: default output voxel size in mm (one number or one per axis); the per-axis scale is
            ``input spacing / target spacing``.
        chunk_size: queries decoded per network call (65536 is the CPU sweet spot; GPUs like 2**18 - 2**20).
        amp_bf16: run encoder and decoder under bf16 autocast: ``True``, ``False`` or ``"auto"`` (bf16 where the device
            multiplies bf16 natively: AMX/AVX-512 BF16 CPUs, CUDA; :func:`~monai_inr.inferers.precision.native_bf16`).
            Several times faster there, at the accuracy cost of bf16 activations (the feature lookup stays float32).
        voxel_budget: the largest number of LR voxels encoded at once (tile incl. halo); larger inputs are tiled.
        memory_budget_gb: the most resident memory the process may reach during the call (the current resident size
            counts); ``None``: 6 GB, or less when the machine has less available. Tiles are shrunk to fit; when even
            the output plus the smallest working set would not fit, :class:`~monai_inr.errors.InputError` is raised before
            any work.
        progress: show a ``tqdm`` progress bar over the decoded chunks.
        channels_last: store convolution weights, activations and feature maps channels-last (converts the network's
            conv weights in place; values unchanged). 2-4x faster convolutions and lookups on CPU.

    Call ``inferer(inputs, network, scale=..., target_spacing=..., output_shape=...)``: values given to the call
    override the constructor's; exactly one of the three must be set in the end. ``output_shape`` fixes the grid
    exactly (validation against a label grid). Extra ``*args``/``**kwargs`` are passed to ``network.encode``.

    Batches: every item gets the same output shape (with ``target_spacing`` the first item's spacing decides it) and
    its own affine; for collated MetaTensors (``is_batch``) the ``sr_*`` metadata are per item, so
    ``monai.data.decollate_batch`` splits the result correctly.
    """

    def __init__(
        self,
        scale: float | Sequence[float] | None = None,
        target_spacing: float | Sequence[float] | None = None,
        chunk_size: int = 65536,
        amp_bf16: bool | str = False,
        voxel_budget: int = 128**3,
        memory_budget_gb: float | None = None,
        progress: bool = False,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size}.")
        if int(voxel_budget) < 1:
            raise ValueError(f"voxel_budget must be a positive integer, got {voxel_budget}.")
        if memory_budget_gb is not None and not (np.isfinite(memory_budget_gb) and memory_budget_gb > 0):
            raise ValueError(f"memory_budget_gb must be positive, got {memory_budget_gb}.")
        self.scale = scale
        self.target_spacing = target_spacing
        self.chunk_size = int(chunk_size)
        self.amp_bf16 = amp_setting(amp_bf16)
        self.voxel_budget = int(voxel_budget)
        self.memory_budget_gb = memory_budget_gb
        self.progress = bool(progress)
        self.channels_last = bool(channels_last)

    # ------------------------------------------------------------------ geometry
    def _resolve_grid(
        self,
        in_shape: tuple[int, ...],
        affine: np.ndarray,
        scale: Any,
        target_spacing: Any,
        output_shape: Any,
    ) -> tuple[tuple[int, ...], dict[str, Any]]:
        call = {"scale": scale, "target_spacing": target_spacing, "output_shape": output_shape}
        if all(v is None for v in call.values()):
            call = {"scale": self.scale, "target_spacing": self.target_spacing, "output_shape": None}
        given = [k for k, v in call.items() if v is not None]
        if len(given) != 1:
            raise InputError(
                "Give exactly one of scale, target_spacing or output_shape to define the output grid, "
                f"got {given or 'none'}."
            )
        nd = len(in_shape)
        key = given[0]
        try:
            if key == "output_shape":
                out_shape = tuple(int(v) for v in np.asarray(call[key]).reshape(-1).tolist())
                if len(out_shape) != nd or min(out_shape) < 1:
                    raise ValueError(f"output_shape must be {nd} positive integers, got {call[key]}.")
            elif key == "scale":
                out_shape = coords.scaled_shape(in_shape, coords.as_scale_tuple(call[key], nd))
            else:
                ts = coords.as_scale_tuple(call[key], nd, name="target_spacing")
                scales = tuple(float(sp) / t for sp, t in zip(coords.spacing_from_affine(affine)[:nd], ts))
                out_shape = coords.scaled_shape(in_shape, scales)
        except (ValueError, TypeError) as e:
            raise InputError(f"Invalid {key} {call[key]!r}: {e}") from None
        info = {"requested_" + key: call[key]}
        return out_shape, info

    @staticmethod
    def _fov_affine(affine: torch.Tensor, in_shape: Sequence[int], out_shape: Sequence[int]) -> torch.Tensor:
        a = np.asarray(affine.detach().cpu(), dtype=np.float64)
        nd_aff = a.shape[-1] - 1
        pad = (1,) * max(0, nd_aff - len(in_shape))
        ins, outs = tuple(in_shape) + pad, tuple(out_shape) + pad
        if a.ndim == 3:
            return torch.as_tensor(np.stack([coords.fov_affine(x, ins, outs) for x in a]), dtype=torch.float64)
        return torch.as_tensor(coords.fov_affine(a, ins, outs), dtype=torch.float64)

    # ------------------------------------------------------------------ memory
    def _budget_bytes(self) -> float:
        return memory_budget_bytes(self.memory_budget_gb)

    # ------------------------------------------------------------------ main
    def __call__(  # type: ignore[override]
        self,
        inputs: torch.Tensor,
        network: Any,
        *args: Any,
        scale: float | Sequence[float] | None = None,
        target_spacing: float | Sequence[float] | None = None,
        output_shape: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> MetaTensor:
        """Super-resolve ``inputs`` ``(B, C, *spatial)`` with ``network``; returns ``(B, C_out, *out_shape)``."""
        if not isinstance(inputs, torch.Tensor) or inputs.ndim not in (4, 5):
            shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            raise InputError(f"ImplicitInferer expects a (B, C, H, W) or (B, C, D, H, W) tensor, got {shape}.")
        network = unwrap_network(network)  # encode/decode live on the wrapped module; inference needs no gradient sync
        if not (hasattr(network, "encode") and hasattr(network, "decode")):
            raise TypeError(f"{type(network).__name__} has no encode/decode methods (see ImplicitNetwork).")
        nd = inputs.ndim - 2
        in_shape = tuple(int(s) for s in inputs.shape[2:])
        if isinstance(inputs, MetaTensor):
            in_affine = inputs.affine.clone()
            meta = dict(inputs.meta)
            image = inputs.as_tensor()
        else:
            in_affine, meta, image = torch.eye(4, dtype=torch.float64), {}, inputs
        aff0 = np.asarray((in_affine[0] if in_affine.ndim == 3 else in_affine).cpu(), dtype=np.float64)
        out_shape, info = self._resolve_grid(in_shape, aff0, scale, target_spacing, output_shape)

        batch = int(inputs.shape[0])
        out_ch = int(getattr(network, "out_channels", 1))
        radius = getattr(network, "receptive_radius", None)
        plan, chunk = self._plan(network, batch, in_shape, out_shape, out_ch, radius, inputs.device)

        out_affine = self._fov_affine(in_affine, in_shape, out_shape)
        values = self._run(image, network, plan, chunk, in_shape, out_shape, out_ch, args, kwargs)

        is_batch = isinstance(inputs, MetaTensor) and inputs.is_batch
        affines = out_affine if out_affine.ndim == 3 else out_affine[None]
        new_meta = dict(info)
        new_meta.update(
            {
                "sr_scale": tuple(o / i for o, i in zip(out_shape, in_shape)),
                "sr_input_shape": in_shape,
                "sr_tiles": plan.num_tiles if plan is not None else 1,
            }
        )
        spacings = [tuple(float(v) for v in coords.spacing_from_affine(a.numpy())[:nd]) for a in affines]
        if is_batch:  # per-item values (lists or tensors with a leading batch axis) for decollate_batch
            new_meta = {k: _per_item(v, batch) for k, v in new_meta.items()}
            new_meta["sr_spacing"] = torch.tensor(spacings if len(spacings) == batch else spacings * batch)
            new_meta["spatial_shape"] = torch.tensor([list(out_shape)] * batch)
        else:
            new_meta["sr_spacing"] = spacings[0]
            new_meta["spatial_shape"] = np.asarray(out_shape)
        meta.update(new_meta)
        for k in ("affine", "original_affine"):
            meta.pop(k, None)
        out = MetaTensor(values, affine=out_affine.to(torch.float64), meta=meta)
        out.is_batch = is_batch
        return out

    def _plan(
        self,
        network: Any,
        batch: int,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        out_ch: int,
        radius: int | None,
        device: torch.device | None = None,
    ) -> tuple[TilePlan | None, int]:
        budget = self._budget_bytes()
        rss = float(psutil.Process().memory_info().rss)
        n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
        out_bytes = 4.0 * batch * out_ch * n_out
        amp = resolve_amp_bf16(self.amp_bf16, device or "cpu")
        enc_voxel = encoder_bytes_per_voxel(network, batch, amp)
        chunk = min(self.chunk_size, n_out)
        fixed = estimate_peak_bytes(
            network, output_values=batch * out_ch * n_out, queries=chunk, batch=batch, amp_bf16=amp, in_use=rss
        )
        free = budget - fixed

        def fail(need: float) -> InputError:
            return memory_error(
                need,
                budget,
                f"The requested output grid {_format(out_shape)} (from input {_format(in_shape)}, batch {batch})",
                "lower the scale, enable amp_bf16 or raise memory_budget_gb",
                detail=f" (output {out_bytes / GB:.2f} GB plus working memory and the {rss / GB:.2f} GB already in use)",
            )

        mem_tile = int(free / enc_voxel) if free > 0 else 0  # hard limit (memory budget)
        max_tile = min(self.voxel_budget, mem_tile)  # preferred limit
        if n_in <= max_tile:
            return None, chunk
        if radius is None:  # cannot tile: the whole input is encoded at once
            need = fixed + n_in * enc_voxel
            if need > budget:
                raise fail(need)
            return None, chunk
        halo = int(radius) + 1
        plan = plan_tiles(in_shape, halo, max_tile)
        if plan is None:  # voxel_budget is below what tiles with this halo can reach: the memory budget decides
            plan = plan_tiles(in_shape, halo, mem_tile)
        if plan is None:
            min_tile = int(np.prod([_axis_splits(n, halo)[0][2] for n in in_shape]))
            raise fail(fixed + min_tile * enc_voxel)
        if plan.num_tiles == 1:
            return None, chunk
        return plan, chunk

    def _encode(self, network: Any, tile: torch.Tensor, args: tuple, kwargs: dict) -> Any:
        if self.channels_last:
            fmt = torch.channels_last_3d if tile.ndim == 5 else torch.channels_last
            tile = tile.contiguous(memory_format=fmt)
        features = network.encode(tile, *args, **kwargs)
        if self.channels_last and isinstance(features, torch.Tensor) and features.ndim in (4, 5):
            fmt = torch.channels_last_3d if features.ndim == 5 else torch.channels_last
            features = features.contiguous(memory_format=fmt)
        return features

    def _run(
        self,
        image: torch.Tensor,
        network: Any,
        plan: TilePlan | None,
        chunk: int,
        in_shape: tuple[int, ...],
        out_shape: tuple[int, ...],
        out_ch: int,
        args: tuple,
        kwargs: dict,
    ) -> torch.Tensor:
        nd = len(in_shape)
        batch, device = image.shape[0], image.device
        if self.channels_last and isinstance(network, torch.nn.Module):
            network.to(memory_format=torch.channels_last_3d if nd == 3 else torch.channels_last)
        out = torch.empty((batch, out_ch, *out_shape), dtype=torch.float32, device=device)
        # per-axis global normalised coordinates of the output grid (float64 until they go to the network)
        axes = [coords.voxel_to_normalized(np.arange(m, dtype=np.float64), (m,)) for m in out_shape]
        if plan is None:
            cores = [((0, n),) for n in in_shape]
            regions = cores
        else:
            cores, regions = list(plan.cores), list(plan.regions)
        tiles = list(itertools.product(*[range(len(c)) for c in cores]))
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=int(np.prod(out_shape)), unit="vox", desc="ImplicitInferer")
        amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolve_amp_bf16(self.amp_bf16, device))
        with torch.inference_mode(), amp:
            for t in tiles:
                core = [cores[d][t[d]] for d in range(nd)]
                reg = [regions[d][t[d]] for d in range(nd)]
                o_rng = [
                    (_out_start(a, n, m), _out_start(b, n, m) if b < n else m)
                    for (a, b), n, m in zip(core, in_shape, out_shape)
                ]
                if any(o1 <= o0 for o0, o1 in o_rng):
                    continue
                sl = tuple(slice(s, e) for s, e in reg)
                features = self._encode(network, image[(slice(None), slice(None)) + sl], args, kwargs)
                whole = all(s == 0 and e == n for (s, e), n in zip(reg, in_shape))
                # The block is a tensor-product grid: per-axis coordinates, and the coordinates of one "plane" (all
                # axes but the first) built once; chunks are flat index ranges assembled from (parts of) planes.
                g_ax, l_ax = [], []
                for d in range(nd):
                    (o0, o1), (s, e), n = o_rng[d], reg[d], in_shape[d]
                    g = axes[d][o0:o1]
                    g_ax.append(torch.as_tensor(g, dtype=torch.float32, device=device))
                    if not whole:  # the same points in the tile's own normalised frame
                        u = coords.normalized_to_voxel(g, (n,)) - s
                        l_ax.append(
                            torch.as_tensor(coords.voxel_to_normalized(u, (e - s,)), dtype=torch.float32, device=device)
                        )
                block = tuple(o1 - o0 for o0, o1 in o_rng)
                n0, plane = block[0], int(np.prod(block[1:]))
                g_plane = torch.stack(torch.meshgrid(*g_ax[1:], indexing="ij"), -1).reshape(plane, nd - 1)
                l_plane = None
                if not whole:
                    l_plane = torch.stack(torch.meshgrid(*l_ax[1:], indexing="ij"), -1).reshape(plane, nd - 1)
                full = all(o0 == 0 and o1 == m for (o0, o1), m in zip(o_rng, out_shape))
                n_block = n0 * plane
                dest = out.view(batch, out_ch, -1) if full else torch.empty((batch, out_ch, n_block), device=device)
                for p0 in range(0, n_block, chunk):
                    p1 = min(n_block, p0 + chunk)
                    q = _flat_coords(g_ax[0], g_plane, p0, p1, batch)
                    if whole:
                        vals = network.decode(features, q)
                    else:
                        vals = network.decode(features, q, _flat_coords(l_ax[0], l_plane, p0, p1, batch))
                    dest[:, :, p0:p1] = vals.transpose(1, 2)
                    if bar is not None:
                        bar.update(p1 - p0)
                if not full:
                    out[(slice(None), slice(None)) + tuple(slice(o0, o1) for o0, o1 in o_rng)] = dest.view(
                        batch, out_ch, *block
                    )
                del features
        if bar is not None:
            bar.close()
        return out
