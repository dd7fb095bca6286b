"""Input encodings of coordinate networks: Gaussian Fourier features and a multiresolution hash grid.

* :class:`FourierFeatures`: Tancik et al., "Fourier Features Let Networks Learn High Frequency Functions in Low
  Dimensional Domains", NeurIPS 2020, with a Gaussian random matrix ``B``; the input encoding of the split-head
  multi-contrast INR (McGinnis, Shit et al., MICCAI 2023, section 2: ``v = [cos(2 pi B x), sin(2 pi B x)]``, 256
  frequencies with scale 4 -> 512 features). ``B`` is a registered **buffer**, so a checkpoint holds it (the
  upstream code regenerates it from a seed and does not save it; ``bundles/multi_contrast_inr/docs/README.md``,
  "Method").
* :class:`HashGridEncoding`: the multiresolution hash encoding of Mueller et al., "Instant Neural Graphics Primitives
  with a Multiresolution Hash Encoding", ACM TOG 41(4), 2022 (section 3), written in plain PyTorch (no CUDA
  extension), for the CPU fast path of the multi-contrast bundle.

Both map ``(..., in_features)`` coordinates (normalised to [-1, 1]) to ``(..., out_features)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn

__all__ = ["FourierFeatures", "HashGridEncoding", "fixed_resolution", "get_encoding"]


class FourierFeatures(nn.Module):
    """Gaussian random Fourier features ``gamma(x) = [sin(2 pi x B^T), cos(2 pi x B^T)]``.

    ``B`` (``num_frequencies x in_features``) is drawn once from ``N(0, scale^2)`` with a private generator seeded by
    ``seed`` (the global RNG is untouched) and stored as a buffer: it is part of ``state_dict()`` and moves with
    ``.to()``, but it is not trained.

    Args:
        in_features: coordinate dimension (3).
        num_frequencies: rows of ``B``; the output has ``2 * num_frequencies`` features (McGinnis et al.: 256 -> 512).
        scale: standard deviation of the entries of ``B`` (McGinnis et al. Table 3: 4.0).
        seed: seed of the draw (the upstream code uses 12).
        include_input: also append the raw coordinates (off in the paper).
    """

    def __init__(
        self,
        in_features: int = 3,
        num_frequencies: int = 256,
        scale: float = 4.0,
        seed: int = 12,
        include_input: bool = False,
    ) -> None:
        super().__init__()
        if int(in_features) < 1 or int(num_frequencies) < 1:
            raise ValueError(f"in_features and num_frequencies must be positive, got {in_features}, {num_frequencies}.")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be positive, got {scale}.")
        self.in_features = int(in_features)
        self.num_frequencies = int(num_frequencies)
        self.scale = float(scale)
        self.include_input = bool(include_input)
        gen = torch.Generator().manual_seed(int(seed))
        self.register_buffer("B", torch.randn(self.num_frequencies, self.in_features, generator=gen) * self.scale)

    @property
    def out_features(self) -> int:
        return 2 * self.num_frequencies + (self.in_features if self.include_input else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = (2.0 * math.pi) * (x.to(self.B.dtype) @ self.B.T)
        parts = [torch.sin(proj), torch.cos(proj)]
        if self.include_input:
            parts.append(x.to(proj.dtype))
        return torch.cat(parts, dim=-1)


# hashing primes of Mueller et al. 2022 (eq. 4): the first dimension is not scrambled (pi_1 = 1)
_PRIMES = (1, 2654435761, 805459861, 3674653429)


def _gather_rows(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[idx]`` for a ``(S, F)`` float32 table; pairs of features are fetched as one complex64 element (2.5x
    faster random gathers on CPU than a row-wise ``index_select``)."""
    f = table.shape[1]
    if table.dtype == torch.float32 and f % 2 == 0 and table.is_contiguous():
        c = torch.view_as_complex(table.view(-1, f // 2, 2))
        rows = c.view(-1).index_select(0, idx) if f == 2 else c.index_select(0, idx)  # 1D: fastest kernel
        return torch.view_as_real(rows).reshape(-1, f)
    return table.index_select(0, idx)


def _scatter_add_rows(size: int, idx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``zeros(size, F).index_add_(0, idx, rows)``, adding pairs of features as complex64 (exact: complex addition is
    component-wise) to halve the number of scattered elements."""
    f = rows.shape[1]
    if rows.dtype == torch.float32 and f % 2 == 0:
        out = torch.zeros(size, f // 2, dtype=torch.complex64, device=rows.device)
        src = torch.view_as_complex(rows.contiguous().view(-1, f // 2, 2))
        if f == 2:
            out.view(-1).index_add_(0, idx, src.view(-1))
        else:
            out.index_add_(0, idx, src)
        return torch.view_as_real(out).reshape(size, f)
    return torch.zeros(size, f, dtype=rows.dtype, device=rows.device).index_add_(0, idx, rows)


class _InterpolateRows(torch.autograd.Function):
    """``out[k, l] = sum_c w[k, l, c] * table[idx[k, l, c]]`` with a scatter-add backward for the table only.

    Autograd's generic ``embedding`` backward is ~5x slower on CPU than one ``index_add_``, and keeping the gathered
    rows for the weighting's backward costs memory; this function stores only ``idx`` and ``w``. No gradient flows to
    the weights (the coordinates are inputs, not parameters).
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        nl, k, c = idx.shape
        rows = _gather_rows(table, idx.reshape(-1)).view(nl, k, c, table.shape[1])
        ctx.save_for_backward(idx, w)
        ctx.table_size = table.shape[0]
        return (rows * w[..., None]).sum(dim=2)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        idx, w = ctx.saved_tensors
        g_rows = (w[..., None] * grad_out[:, :, None, :]).reshape(-1, grad_out.shape[-1])
        return _scatter_add_rows(ctx.table_size, idx.reshape(-1), g_rows), None, None


class HashGridEncoding(nn.Module):
    """Multiresolution hash encoding (Mueller et al. 2022, section 3) in pure PyTorch.

    ``num_levels`` grids with resolutions growing geometrically from ``base_resolution`` to ``max_resolution`` cells
    across [-1, 1] per axis. Level ``l`` stores ``features_per_level`` trainable values per grid vertex in a table of
    at most ``2 ** log2_table_size`` entries: coarse levels that fit are indexed densely (one entry per vertex, no
    collisions), finer ones through the spatial hash ``xor_d (v_d * pi_d) mod T``. A query interpolates its level
    features trilinearly from the ``2 ** in_features`` surrounding vertices; the levels are concatenated
    (``num_levels * features_per_level`` outputs). Table entries start in ``U(-init_scale, init_scale)``.

    Implementation notes (CPU speed): all dense levels and all hashed levels are each computed in one vectorised pass
    (integer vertex indices built per axis and combined by broadcasting, one ``embedding`` gather from a single
    concatenated table). The table gradient is dense; train with large batches (``2 ** 14`` and more) so that the
    optimiser update of the table is amortised.

    Args:
        in_features: coordinate dimension (2 or 3).
        num_levels: ``L``.
        features_per_level: ``F``.
        log2_table_size: ``log2 T`` per level.
        base_resolution: cells across [-1, 1] on the coarsest level.
        max_resolution: cells across [-1, 1] on the finest level: one value, or one per axis (the finest cell
            matched to the sampling acquired along each axis:
            :meth:`monai_inr.data.coordinates.ContrastPair.acquired_resolution`).
        init_scale: half-width of the uniform initialisation.
    """

    def __init__(
        self,
        in_features: int = 3,
        num_levels: int = 16,
        features_per_level: int = 2,
        log2_table_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int | Sequence[int] = 512,
        init_scale: float = 1e-4,
    ) -> None:
        super().__init__()
        if not 1 <= int(in_features) <= 4:
            raise ValueError(f"in_features must be 1-4, got {in_features}.")
        if int(num_levels) < 1 or int(features_per_level) < 1 or not 4 <= int(log2_table_size) <= 30:
            raise ValueError(
                f"need num_levels >= 1, features_per_level >= 1 and 4 <= log2_table_size <= 30, got "
                f"{num_levels}, {features_per_level}, {log2_table_size}."
            )
        max_res = [int(r) for r in max_resolution] if isinstance(max_resolution, Sequence) else [int(max_resolution)]
        if len(max_res) not in (1, int(in_features)):
            raise ValueError(f"max_resolution must be one value or one per axis ({in_features}), got {max_resolution}.")
        if not 1 <= int(base_resolution) <= min(max_res):
            raise ValueError(f"need 1 <= base_resolution <= max_resolution, got {base_resolution}, {max_resolution}.")
        self.in_features = int(in_features)
        self.num_levels = int(num_levels)
        self.features_per_level = int(features_per_level)
        self.log2_table_size = int(log2_table_size)
        self.base_resolution = int(base_resolution)
        self.max_resolution = max_res[0] if len(max_res) == 1 else tuple(max_res)
        max_res = max_res * self.in_features if len(max_res) == 1 else max_res
        t = 2**self.log2_table_size
        growths = [
            math.exp((math.log(m) - math.log(self.base_resolution)) / (self.num_levels - 1)) if self.num_levels > 1
            else 1.0
            for m in max_res
        ]
        # per level and axis: every axis grows geometrically from base_resolution to its own max_resolution
        res = [[int(math.floor(self.base_resolution * g**lvl + 1e-9)) for g in growths] for lvl in range(self.num_levels)]
        sizes, dense = [], []
        for r in res:
            n_vertices = math.prod(v + 1 for v in r)
            dense.append(n_vertices <= t)
            sizes.append(min(n_vertices, t))
        offsets = [0]
        for s in sizes[:-1]:
            offsets.append(offsets[-1] + s)
        isotropic = all(len(set(r)) == 1 for r in res)
        self.resolutions = tuple(r[0] for r in res) if isotropic else tuple(tuple(r) for r in res)
        self.growth = growths[0] if len(set(growths)) == 1 else tuple(growths)
        self.level_sizes = tuple(sizes)
        self.embeddings = nn.Parameter(
            torch.empty(sum(sizes), self.features_per_level).uniform_(-float(init_scale), float(init_scale))
        )
        # per-group constants (buffers: they follow .to(device) and are not trained; not saved: derived from args)
        groups = (("dense", [i for i, d in enumerate(dense) if d]), ("hashed", [i for i, d in enumerate(dense) if not d]))
        for name, sel in groups:
            r = torch.tensor([res[i] for i in sel], dtype=torch.float32).reshape(len(sel), self.in_features)
            if name == "dense":  # vertex index sum_d v_d * prod_{e < d} (res_e + 1): axis 0 varies fastest
                mult = torch.tensor(
                    [[math.prod(res[i][e] + 1 for e in range(d)) for d in range(self.in_features)] for i in sel],
                    dtype=torch.int64,
                ).reshape(len(sel), self.in_features)
            else:
                mult = torch.tensor([list(_PRIMES[: self.in_features]) for _ in sel], dtype=torch.int64).reshape(
                    len(sel), self.in_features
                )
            self.register_buffer(f"_{name}_levels", torch.tensor(sel, dtype=torch.int64), persistent=False)
            self.register_buffer(f"_{name}_res", r, persistent=False)
            self.register_buffer(f"_{name}_mult", mult, persistent=False)
            self.register_buffer(
                f"_{name}_offset", torch.tensor([offsets[i] for i in sel], dtype=torch.int64), persistent=False
            )

    @property
    def out_features(self) -> int:
        return self.num_levels * self.features_per_level

    def extra_repr(self) -> str:
        return (
            f"levels={self.num_levels}, features={self.features_per_level}, table=2**{self.log2_table_size}, "
            f"resolutions={self.resolutions[0]}..{self.resolutions[-1]} "
            f"(growth {', '.join(f'{g:.3f}' for g in (self.growth if isinstance(self.growth, tuple) else [self.growth]))})"
        )

    def _group(self, u: torch.Tensor, name: str) -> torch.Tensor | None:
        """Features ``(L_group, K, F)`` of one group of levels (dense or hashed) for ``u`` in [0, 1].

        Level-major layout: consecutive gathers stay inside one level's table, which is much friendlier to the CPU
        caches than interleaving the levels of each point.
        """
        levels = getattr(self, f"_{name}_levels")
        if levels.numel() == 0:
            return None
        res = getattr(self, f"_{name}_res")
        mult = getattr(self, f"_{name}_mult")
        offset = getattr(self, f"_{name}_offset")
        k, d = u.shape
        nl = levels.numel()
        pos = res[:, None, :] * u[None]  # (Lg, K, d) in vertex units (res: (Lg, d), one resolution per axis)
        # keep the upper vertex inside the grid: positions in [0, res - eps]
        pos = torch.minimum(pos, (res - 1e-4)[:, None, :])
        base = pos.floor()
        frac = pos - base
        lo = base.to(torch.int64) * mult[:, None, :]  # (Lg, K, d): index contribution of the lower vertex per axis
        hi = lo + mult[:, None, :]
        combine = torch.add if name == "dense" else torch.bitwise_xor
        n_corners = 2**d
        idx = torch.empty((nl, k, n_corners), dtype=torch.int64, device=u.device)
        w = torch.empty((nl, k, n_corners), dtype=frac.dtype, device=u.device)
        one_minus = 1.0 - frac
        # corner c: bit (d - 1 - ax) of c selects the upper vertex on axis ax (axis 0 is the slowest bit)
        for c in range(n_corners):
            bits = [(c >> (d - 1 - ax)) & 1 for ax in range(d)]
            ic = hi[..., 0] if bits[0] else lo[..., 0]
            wc = frac[..., 0] if bits[0] else one_minus[..., 0]
            for ax in range(1, d):
                ic = combine(ic, hi[..., ax] if bits[ax] else lo[..., ax])
                wc = wc * (frac[..., ax] if bits[ax] else one_minus[..., ax])
            idx[..., c] = ic
            w[..., c] = wc
        if name != "dense":
            idx = torch.bitwise_and(idx, (1 << self.log2_table_size) - 1)
        idx = idx + offset[:, None, None]
        return _InterpolateRows.apply(self.embeddings, idx, w.to(self.embeddings.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        if x.shape[-1] != self.in_features:
            raise ValueError(f"expected coordinates with {self.in_features} components, got {x.shape[-1]}.")
        u = ((x.reshape(-1, self.in_features).float().clamp(-1.0, 1.0) + 1.0) * 0.5).contiguous()
        # resolutions increase with the level, so the densely indexed levels are the first ones
        parts = [f for f in (self._group(u, "dense"), self._group(u, "hashed")) if f is not None]
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)  # (L, K, F)
        return out.permute(1, 0, 2).reshape(*lead, self.out_features)


def fixed_resolution(setting: int | str | Sequence[int], stand_in: int = 128) -> int | list[int]:
    """A hash grid's ``max_resolution`` where no subject is at hand: ``setting`` itself, or ``stand_in`` for
    ``"auto"`` (a fit sizes its grid to the subject's acquisition,
    :meth:`monai_inr.data.coordinates.ContrastPair.acquired_resolution`, and its checkpoint carries that network; the
    stand-in only shapes configuration checks and the network for a plain state-dict checkpoint of an older fit)."""
    if isinstance(setting, str):
        if setting.strip().lower() != "auto":
            raise ValueError(f"hash-grid resolution must be cells (one number or one per axis) or 'auto', got {setting!r}.")
        return int(stand_in)
    return [int(v) for v in setting] if isinstance(setting, Sequence) else int(setting)


def get_encoding(name: str, in_features: int = 3, **kwargs) -> nn.Module:
    """``"fourier"`` -> :class:`FourierFeatures`, ``"hashgrid"`` -> :class:`HashGridEncoding` (case-insensitive)."""
    key = str(name).lower().replace("-", "").replace("_", "")
    if key in ("fourier", "fourierfeatures", "ff"):
        return FourierFeatures(in_features=in_features, **kwargs)
    if key in ("hashgrid", "hash", "hashgridencoding"):
        return HashGridEncoding(in_features=in_features, **kwargs)
    raise ValueError(f"unknown encoding {name!r}; choose 'fourier' or 'hashgrid'.")
