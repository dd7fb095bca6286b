"""Grids and coordinate frames: the one place that owns the project's geometry convention.

Convention (used by every module, bundle and test):

* array axes are (D, H, W) = (i, j, k) voxel indices, channel first;
* normalised coordinates are cell-centred in [-1, 1] per axis (``align_corners=False``): voxel ``n`` of ``N`` sits at
  ``-1 + (2n + 1) / N``; the field of view (FOV) spans exactly [-1, 1];
* ``torch.nn.functional.grid_sample`` wants (x, y, z) = (W, H, D): the flip happens only in :func:`to_grid_sample_order`;
* world coordinates are scanner millimetres, ``world = affine @ [i, j, k, 1]`` (NIfTI voxel-to-world);
* a super-resolved output covers the input FOV: ``shape = round(N * s)``, ``spacing = spacing_in * N / round(N * s)``,
  and the physical centre of the FOV is kept (:func:`output_geometry`);
* inputs on different grids (multi-contrast INR, Nexus-INR) meet in one :class:`SharedFrame` built from their affines
  over the union FOV; :func:`check_overlap` refuses inputs that do not overlap in scanner space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from monai_inr.errors import InputError

__all__ = [
    "fraction_inside_fov",
    "as_scale_tuple",
    "normalized_grid",
    "cell_size",
    "to_grid_sample_order",
    "sample_features",
    "CUBIC_BSPLINE_POLE",
    "cubic_bspline_prefilter",
    "cubic_bspline_coefficients",
    "sample_cubic_bspline",
    "voxel_to_normalized",
    "normalized_to_voxel",
    "voxel_to_world",
    "world_to_voxel",
    "normalized_to_world",
    "world_to_normalized",
    "spacing_from_affine",
    "output_geometry",
    "scaled_shape",
    "fov_affine",
    "voxel_map",
    "fov_corners",
    "direction_matrix",
    "SharedFrame",
    "frame_points",
    "nearest_mask_lookup",
    "check_overlap",
    "union_output_grid",
]

ArrayLike = np.ndarray | torch.Tensor


def as_scale_tuple(scale: float | Sequence[float], ndim: int, name: str = "scale") -> tuple[float, ...]:
    """A per-axis tuple from one number or ``ndim`` numbers; raises ``ValueError`` for non-positive or non-finite values."""
    if isinstance(scale, torch.Tensor):
        scale = scale.detach().cpu().flatten().tolist()
    elif isinstance(scale, np.ndarray):
        scale = scale.flatten().tolist()
    given = scale
    if isinstance(scale, str):  # a command-line value: "2", "1,1,4" or "[1, 1, 4]"
        scale = [p for p in scale.strip().strip("[]()").replace(" ", ",").split(",") if p]
    try:
        if isinstance(scale, (int, float, np.floating, np.integer)):
            values = (float(scale),) * ndim
        else:
            values = tuple(float(s) for s in scale)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be one number or {ndim} numbers (one per axis), got {given!r}.") from None
        if len(values) == 1:
            values = values * ndim
    if len(values) != ndim:
        raise ValueError(f"{name} must be one number or {ndim} numbers (one per axis), got {len(values)}: {values}.")
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{name} must be positive and finite on every axis, got {values}.")
    return values


def normalized_grid(
    shape: Sequence[int],
    flatten: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Cell-centred normalised coordinates of every voxel of ``shape``, in (i, j, k) order.

    Returns ``(prod(shape), ndim)`` if ``flatten`` else ``(*shape, ndim)``, C-order (last axis fastest), so that
    ``values.reshape(shape)`` matches ``grid``.
    """
    axes = [voxel_to_normalized(torch.arange(n, device=device, dtype=torch.float64), (n,)) for n in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).to(dtype)
    return grid.reshape(-1, len(shape)) if flatten else grid


def cell_size(shape: Sequence[int], device: torch.device | str | None = None, dtype=torch.float32) -> torch.Tensor:
    """Size of one voxel of ``shape`` in normalised units, per axis: ``2 / N``."""
    return torch.tensor([2.0 / n for n in shape], device=device, dtype=dtype)


def to_grid_sample_order(coords: torch.Tensor) -> torch.Tensor:
    """(i, j, k) -> (x, y, z) = (k, j, i), the order ``grid_sample`` expects. The only place the flip happens."""
    return coords.flip(-1)


def sample_features(
    features: torch.Tensor, coords: torch.Tensor, mode: str = "bilinear", padding_mode: str = "border"
) -> torch.Tensor:
    """Look up a feature map at normalised coordinates (trilinear in 3D, bilinear in 2D, or nearest).

    Args:
        features: ``(B, C, *spatial)`` with 2 or 3 spatial dimensions.
        coords: ``(B, K, ndim)`` cell-centred normalised (i, j, k) coordinates.

    Returns:
        ``(B, K, C)``.
    """
    ndim = features.ndim - 2
    if coords.shape[-1] != ndim:
        raise ValueError(f"coords have {coords.shape[-1]} components but the feature map has {ndim} spatial dims.")
    b, k = coords.shape[0], coords.shape[1]
    grid = to_grid_sample_order(coords).to(features.dtype).reshape(b, k, *([1] * (ndim - 1)), ndim)
    out = F.grid_sample(features, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    return out.reshape(b, features.shape[1], k).transpose(1, 2)


#: pole of the cubic B-spline interpolation prefilter, ``sqrt(3) - 2`` (Unser, IEEE Signal Process. Mag. 16(6), 1999)
CUBIC_BSPLINE_POLE = math.sqrt(3.0) - 2.0


def cubic_bspline_prefilter(image: torch.Tensor, radius: int = 8) -> torch.Tensor:
    """Cubic B-spline coefficients of ``image`` ``(B, C, *spatial)``: the spline through them interpolates the voxels
    (what ``scipy.ndimage`` computes before an order-3 ``map_coordinates``/``zoom``).

    The exact filter is recursive; here it is its impulse response ``sqrt(3) * z**|k|`` (``z`` =
    :data:`CUBIC_BSPLINE_POLE`) truncated at ``radius`` voxels per axis (relative error ``|z|**(radius + 1)``,
    7e-6 at 8), so a value depends on ``radius`` voxels of context per side only (tiled = untiled with that halo).
    Borders extend the image half-sample symmetrically (scipy's ``"reflect"``). Computed in float32, also under
    autocast (:func:`cubic_bspline_coefficients` is the TorchScript-compatible core). Returns float32, same shape.
    """
    with torch.autocast(device_type=image.device.type, enabled=False):
        return cubic_bspline_coefficients(image, radius)


def cubic_bspline_coefficients(image: torch.Tensor, radius: int = 8) -> torch.Tensor:
    """:func:`cubic_bspline_prefilter` without the autocast guard (scriptable; call it outside autocast)."""
    out = image.float()
    k = torch.arange(-radius, radius + 1, device=out.device, dtype=torch.float64)
    pole = math.sqrt(3.0) - 2.0  # CUBIC_BSPLINE_POLE (a local: TorchScript does not read module globals)
    taps = (math.sqrt(3.0) * torch.pow(torch.full_like(k, pole), k.abs())).float().view(1, 1, -1)
    for axis in range(2, out.dim()):
        n = int(out.shape[axis])
        if n < 2:
            continue
        # half-sample symmetric extension by index (any length, also shorter than the radius)
        idx = torch.remainder(torch.arange(-radius, n + radius, device=out.device), 2 * n)
        idx = torch.where(idx >= n, 2 * n - 1 - idx, idx)
        moved = out.movedim(axis, -1)
        lead = list(moved.shape[:-1])
        padded = moved.index_select(-1, idx).reshape(-1, 1, n + 2 * radius)
        out = F.conv1d(padded, taps).reshape(lead + [n]).movedim(-1, axis)
    return out.contiguous()


def sample_cubic_bspline(coeffs: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Cubic B-spline interpolation of coefficients ``coeffs`` ``(B, C, D, H, W)`` (:func:`cubic_bspline_prefilter`)
    at cell-centred normalised (i, j, k) ``coords`` ``(B, K, 3)`` -> ``(B, K, C)`` float32.

    Eight trilinear lookups (Sigg and Hadwiger, GPU Gems 2, ch. 20, 2005): along each axis the four B-spline taps
    ``w0..w3`` become two linear taps at ``i - 1 + w1 / (w0 + w1)`` and ``i + 1 + w3 / (w2 + w3)`` with weights
    ``w0 + w1`` and ``w2 + w3``. Beyond the outermost voxel centre the coefficients are clamped (``"border"``).
    """
    if coeffs.dim() != 5 or coords.shape[-1] != 3:
        raise ValueError("sample_cubic_bspline needs 3D coefficients (B, C, D, H, W) and (B, K, 3) coordinates.")
    b, k = coords.shape[0], coords.shape[1]
    n = torch.tensor([float(coeffs.shape[2]), float(coeffs.shape[3]), float(coeffs.shape[4])], device=coords.device)
    p = ((coords.float() + 1.0) * n - 1.0) / 2.0  # voxel index units
    i = torch.floor(p)
    t = p - i
    t2 = t * t
    t3 = t2 * t
    w0 = (1.0 - t) ** 3 / 6.0
    w1 = (3.0 * t3 - 6.0 * t2 + 4.0) / 6.0
    w3 = t3 / 6.0
    g0 = w0 + w1
    g1 = 1.0 - g0
    h0 = (2.0 * (i - 1.0 + w1 / g0) + 1.0) / n - 1.0  # back to normalised coordinates
    h1 = (2.0 * (i + 1.0 + w3 / g1) + 1.0) / n - 1.0
    source = coeffs.float()
    out = torch.zeros((b, coeffs.shape[1], k), dtype=torch.float32, device=coeffs.device)
    for corner in range(8):
        upper = [((corner >> (2 - a)) & 1) == 1 for a in range(3)]
        pos = torch.stack([h1[..., a] if upper[a] else h0[..., a] for a in range(3)], dim=-1)
        weight = torch.ones((b, k), dtype=torch.float32, device=coords.device)
        for a in range(3):
            weight = weight * (g1[..., a] if upper[a] else g0[..., a])
        grid = pos.flip(-1).reshape(b, k, 1, 1, 3)  # (x, y, z) order for grid_sample
        val = F.grid_sample(source, grid, mode="bilinear", padding_mode="border", align_corners=False)
        out = out + val.reshape(b, coeffs.shape[1], k) * weight.unsqueeze(1)
    return out.transpose(1, 2)


def _as_tensor(x: ArrayLike) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, True
    return torch.as_tensor(np.asarray(x, dtype=np.float64)), False


def _back(x: torch.Tensor, was_tensor: bool) -> ArrayLike:
    return x if was_tensor else x.numpy()


def voxel_to_normalized(ijk: ArrayLike, shape: Sequence[int]) -> ArrayLike:
    """Voxel indices (continuous) -> cell-centred normalised coordinates."""
    t, was = _as_tensor(ijk)
    n = torch.as_tensor(list(shape), dtype=t.dtype, device=t.device)
    return _back((2 * t + 1) / n - 1, was)


def normalized_to_voxel(coords: ArrayLike, shape: Sequence[int]) -> ArrayLike:
    """Cell-centred normalised coordinates -> continuous voxel indices."""
    t, was = _as_tensor(coords)
    n = torch.as_tensor(list(shape), dtype=t.dtype, device=t.device)
    return _back(((t + 1) * n - 1) / 2, was)


def _affine_tensor(affine: ArrayLike, like: torch.Tensor) -> torch.Tensor:
    a = torch.as_tensor(np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, np.float64))
    return a.to(dtype=like.dtype if like.is_floating_point() else torch.float64, device=like.device)


def voxel_to_world(ijk: ArrayLike, affine: ArrayLike) -> ArrayLike:
    """Continuous voxel indices ``(..., ndim)`` -> world millimetres ``(..., ndim)`` through a ``(ndim+1)²`` affine."""
    t, was = _as_tensor(ijk)
    a = _affine_tensor(affine, t)
    t = t.to(a.dtype)
    nd = t.shape[-1]
    return _back(t @ a[:nd, :nd].T + a[:nd, nd], was)


def world_to_voxel(xyz: ArrayLike, affine: ArrayLike) -> ArrayLike:
    """World millimetres -> continuous voxel indices (inverse affine)."""
    t, was = _as_tensor(xyz)
    a = _affine_tensor(affine, t)
    nd = t.shape[-1]
    inv = torch.linalg.inv(a.double()).to(a.dtype)
    return _back(t.to(a.dtype) @ inv[:nd, :nd].T + inv[:nd, nd], was)


def normalized_to_world(coords: ArrayLike, shape: Sequence[int], affine: ArrayLike) -> ArrayLike:
    """Normalised coordinates of a grid of ``shape`` with ``affine`` -> world millimetres."""
    return voxel_to_world(normalized_to_voxel(coords, shape), affine)


def world_to_normalized(xyz: ArrayLike, shape: Sequence[int], affine: ArrayLike) -> ArrayLike:
    """World millimetres -> normalised coordinates of a grid of ``shape`` with ``affine`` (outside the FOV: |c| > 1)."""
    return voxel_to_normalized(world_to_voxel(xyz, affine), shape)


def fraction_inside_fov(
    shape: Sequence[int], affine: ArrayLike, fov_shape: Sequence[int], fov_affine: ArrayLike, points_per_axis: int = 48
) -> float:
    """Fraction of the voxel centres of one grid (``shape``, ``affine``) that lie inside the field of view of another
    (``fov_shape``, ``fov_affine``: voxel edges, ``-0.5 .. N - 0.5``), both through world coordinates; a regular
    subset of at most ``points_per_axis`` centres per axis is tested. 0 means the two scans do not overlap."""
    step = [max(1, int(math.ceil(int(n) / int(points_per_axis)))) for n in shape]
    axes = np.meshgrid(*[np.arange(0, int(n), s, dtype=np.float64) for n, s in zip(shape, step)], indexing="ij")
    ijk = np.stack([a.ravel() for a in axes], axis=-1)
    v = np.asarray(world_to_voxel(np.asarray(voxel_to_world(ijk, affine)), fov_affine))
    inside = np.all((v >= -0.5) & (v <= np.asarray(fov_shape, dtype=np.float64) - 0.5), axis=1)
    return float(inside.mean())


def spacing_from_affine(affine: ArrayLike) -> np.ndarray:
    """Voxel size per array axis: the norms of the affine's direction columns."""
    a = np.asarray(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    nd = a.shape[0] - 1
    return np.linalg.norm(a[:nd, :nd], axis=0)


def scaled_shape(shape: Sequence[int], scale: float | Sequence[float]) -> tuple[int, ...]:
    """``round(N * s)`` per axis (at least 1)."""
    s = as_scale_tuple(scale, len(shape))
    return tuple(max(1, int(round(n * f))) for n, f in zip(shape, s))


def fov_affine(affine: ArrayLike, in_shape: Sequence[int], out_shape: Sequence[int]) -> np.ndarray:
    """Affine of a grid of ``out_shape`` covering the same FOV as ``in_shape`` with ``affine`` (centre kept).

    Per axis the voxel size is multiplied by ``f = N_in / N_out`` and the first voxel centre moves by
    ``(f - 1) / 2`` input voxels, so the outer edges of the FOV (and therefore its centre) stay put.
    """
    a = np.array(affine.detach().cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    nd = a.shape[0] - 1
    f = np.asarray(in_shape, dtype=np.float64) / np.asarray(out_shape, dtype=np.float64)
    out = a.copy()
    out[:nd, :nd] = a[:nd, :nd] * f[None, :]
    out[:nd, nd] = a[:nd, nd] + a[:nd, :nd] @ ((f - 1) / 2)
    return out


def output_geometry(
    shape: Sequence[int],
    affine: ArrayLike,
    scale: float | Sequence[float] | None = None,
    target_spacing: float | Sequence[float] | None = None,
) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of the super-resolved grid over the same FOV.

    Give exactly one of ``scale`` (output/input voxels per axis; one number or one per axis) or ``target_spacing``
    (mm, one number or one per axis). With a target spacing the per-axis scale is ``spacing_in / target_spacing``;
    either way the shape is ``round(N * s)`` and the spacing is adjusted to keep the FOV exact.
    """
    nd = len(shape)
    if (scale is None) == (target_spacing is None):
        raise ValueError("Give exactly one of scale or target_spacing.")
    if target_spacing is not None:
        ts = as_scale_tuple(target_spacing, nd, name="target_spacing")
        scale = tuple(float(sp) / t for sp, t in zip(spacing_from_affine(affine), ts))
    out_shape = scaled_shape(shape, scale)
    return out_shape, fov_affine(affine, shape, out_shape)


def voxel_map(from_affine: ArrayLike, to_affine: ArrayLike) -> np.ndarray:
    """``4 x 4`` map from the voxel indices of a grid with ``from_affine`` to the voxel indices of a grid with
    ``to_affine`` through world coordinates (``to_affine^-1 @ from_affine``): resampling one grid onto another."""

    def as_np(a: ArrayLike) -> np.ndarray:
        return np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)

    return np.linalg.solve(as_np(to_affine), as_np(from_affine))


# ------------------------------------------------------------------------------------------------------ shared frame


def fov_corners(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """World coordinates ``(8, 3)`` of the outer corners (voxel edges) of a 3D grid."""
    lo_hi = [(-0.5, n - 0.5) for n in shape]
    ijk = np.array([[lo_hi[0][a], lo_hi[1][b], lo_hi[2][c]] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    return np.asarray(voxel_to_world(ijk, affine))


def direction_matrix(affine: np.ndarray) -> np.ndarray:
    """Orthonormal direction matrix of an affine (polar factor of the column-normalised linear part)."""
    m = affine[:3, :3] / spacing_from_affine(affine)[None, :]
    u, _, vt = np.linalg.svd(m)
    return u @ vt


@dataclass(frozen=True)
class SharedFrame:
    """The one normalised coordinate frame of inputs on different grids (multi-contrast INR, Nexus-INR).

    McGinnis, Shit et al., MICCAI 2023, section 2: the voxel centres of both low-resolution scans are mapped to scanner
    (world) coordinates with their affines and normalised into one shared frame. Frame millimetres ``p = R^T x`` for
    world ``x`` (``R``: orthonormal directions of the reference input, so a flipped or oblique reference keeps its
    orientation); normalised coordinates ``n = (p - centre) / half_extent`` with ONE scalar ``half_extent`` (half the
    longest side of the union field of view), so physical distances scale equally along every axis (upstream uses
    one scalar min/max as well) and the union FOV lies in [-1, 1]^3.

    Attributes:
        rotation: ``R`` (3 x 3, columns = frame axes in world coordinates).
        centre: centre of the union FOV box in frame mm.
        half_extent: mm per normalised unit.
        lower, upper: union FOV box (voxel edges of both grids) in frame mm.
    """

    rotation: np.ndarray
    centre: np.ndarray
    half_extent: float
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def from_grids(cls, grids: Sequence[tuple[Sequence[int], np.ndarray]], reference: int = 0) -> SharedFrame:
        """Frame over the union FOV of ``grids`` = ``[(shape, affine), ...]``, oriented like ``grids[reference]``."""
        r = direction_matrix(np.asarray(grids[reference][1], dtype=np.float64))
        pts = np.concatenate([fov_corners(s, np.asarray(a, dtype=np.float64)) for s, a in grids]) @ r
        lower, upper = pts.min(axis=0), pts.max(axis=0)
        centre = (lower + upper) / 2
        half = float((upper - lower).max() / 2)
        return cls(r, centre, half, lower, upper)

    @classmethod
    def from_affine(cls, frame_affine: Any, fov_bounds: Any) -> SharedFrame:
        """Inverse of :attr:`affine` / :attr:`fov_bounds` (the buffers stored in a fitted network)."""

        def as_np(v: Any) -> np.ndarray:
            return np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, np.float64)

        a, b = as_np(frame_affine), as_np(fov_bounds)
        half = float(np.linalg.norm(a[:3, 0]))
        r = a[:3, :3] / half
        centre = r.T @ a[:3, 3]
        return cls(r, centre, half, centre + half * b[0], centre + half * b[1])

    @property
    def affine(self) -> np.ndarray:
        """``4 x 4``: normalised coordinates -> world mm."""
        a = np.eye(4)
        a[:3, :3] = self.rotation * self.half_extent
        a[:3, 3] = self.rotation @ self.centre
        return a

    @property
    def fov_bounds(self) -> np.ndarray:
        """``(2, 3)``: lower and upper corner of the union FOV in normalised coordinates."""
        return np.stack([(self.lower - self.centre) / self.half_extent, (self.upper - self.centre) / self.half_extent])

    def world_to_normalized(self, xyz: np.ndarray) -> np.ndarray:
        return ((np.asarray(xyz, np.float64) @ self.rotation) - self.centre) / self.half_extent

    def sampling_along_axes(self, affine: Any) -> np.ndarray:
        """Millimetres between samples of a grid with ``affine`` along each frame axis ``(3,)``.

        Moving 1 mm along frame axis ``k`` moves ``|(M^-1)_{ik}|`` voxels along voxel axis ``i`` (``M = R^T A``, the
        grid's voxel steps in frame mm); the grid samples that direction as finely as its most-aligned voxel axis, so
        the spacing is ``1 / max_i |(M^-1)_{ik}|``: the voxel spacing for an aligned grid, in between for an oblique
        one (a 45-degree grid of 1 mm x 4 mm voxels samples at 1.41 mm).
        """
        m = self.rotation.T @ np.asarray(affine, np.float64)[:3, :3]
        return 1.0 / np.abs(np.linalg.inv(m)).max(axis=0)

    def cells_across(self, spacing: float | Sequence[float]) -> list[int]:
        """Cells across the normalised ``[-1, 1]`` per frame axis with a cell of ``spacing`` mm (at least one cell;
        rounded up, so the cell is never coarser than ``spacing``)."""
        sp = np.broadcast_to(np.asarray(spacing, np.float64), (3,))
        return [max(1, int(math.ceil(2.0 * self.half_extent / float(v) - 1e-6))) for v in sp]

    def normalized_to_world(self, n: np.ndarray) -> np.ndarray:
        return (np.asarray(n, np.float64) * self.half_extent + self.centre) @ self.rotation.T

    def output_grid(self, target_spacing: float | Sequence[float]) -> tuple[tuple[int, ...], np.ndarray]:
        """Shape and affine of the grid over the union FOV at ``target_spacing`` mm (one number: isotropic).

        The spacing is exactly the target; ``round(extent / spacing)`` voxels per axis (at least 1), centred on the
        union FOV (so the grid's outer edges are within half a voxel of the FOV's), axes along the frame (the
        reference input's orientation).

        Raises:
            InputError: a spacing that is not positive and finite.
        """
        try:
            ts = np.asarray(as_scale_tuple(target_spacing, 3, name="target_spacing"))
        except ValueError as e:
            raise InputError(str(e)) from None
        extent = self.upper - self.lower
        shape = tuple(max(1, int(round(float(e) / float(s)))) for e, s in zip(extent, ts))
        first = self.centre - (np.asarray(shape) - 1) / 2.0 * ts
        a = np.eye(4)
        a[:3, :3] = self.rotation * ts[None, :]
        a[:3, 3] = self.rotation @ first
        return shape, a


def frame_points(frame: SharedFrame, shape: Sequence[int], affine: np.ndarray, start: int, stop: int) -> torch.Tensor:
    """Normalised frame coordinates (float32) of the flat voxel indices ``[start, stop)`` of a grid."""
    flat = np.arange(start, stop, dtype=np.int64)
    ijk = np.stack(np.unravel_index(flat, tuple(shape)), axis=-1).astype(np.float64)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    return torch.from_numpy(frame.world_to_normalized(world).astype(np.float32))


def nearest_mask_lookup(mask: np.ndarray, affine: np.ndarray, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside FOV, mask value) of ``mask`` at world points (nearest voxel)."""
    ijk = np.asarray(world_to_voxel(world, affine))
    idx = np.rint(ijk).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(mask.shape)), axis=1)
    val = np.zeros(len(world), dtype=bool)
    val[inside] = mask[tuple(idx[inside].T)]
    return inside, val


def check_overlap(
    shape1: Sequence[int],
    affine1: np.ndarray,
    shape2: Sequence[int],
    affine2: np.ndarray,
    names: Sequence[str] = ("t1w", "t2w"),
) -> float:
    """Fraction of input 2's voxel centres inside input 1's field of view; :class:`InputError` when zero."""
    frac = fraction_inside_fov(shape2, affine2, shape1, affine1)
    if frac == 0.0:
        raise InputError(
            f"{names[0]} and {names[1]} do not overlap in scanner space (no voxel of one lies inside the other's field "
            f"of view); give two aligned scans of the same subject."
        )
    return frac


def union_output_grid(
    shape1: Sequence[int],
    affine1: np.ndarray,
    shape2: Sequence[int],
    affine2: np.ndarray,
    target_spacing: float | Sequence[float],
) -> tuple[tuple[int, ...], np.ndarray]:
    """Grid over the union field of view of both inputs at ``target_spacing`` mm, oriented like the first input
    (:meth:`SharedFrame.output_grid`)."""
    frame = SharedFrame.from_grids([(tuple(shape1), np.asarray(affine1)), (tuple(shape2), np.asarray(affine2))], 0)
    return frame.output_grid(target_spacing)
