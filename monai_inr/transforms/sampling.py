"""Training-sample construction for INR super-resolution: scale-pair patches and coordinate/value sampling.

Outputs follow one data contract (fixed size, collatable with MONAI's ``list_data_collate``):

* ``coord``: ``(K, ndim)`` cell-centred normalised coordinates in (i, j, k) order (:mod:`monai_inr.coords`);
* ``cell``: ``(K, ndim)`` size of the queried voxel in the same normalised units (``2 / N`` on its own grid);
* values/``label``: ``(K, C)`` intensities at those voxels;
* ``scale``: ``(ndim,)`` actual ``N_hr / N_lr``.

All randomness comes from the transform's own ``self.R`` (MONAI :class:`~monai.transforms.Randomizable`), so
``monai.utils.set_determinism(seed)`` followed by building a ``Compose``, or ``set_random_state(seed)``, makes the
samples reproducible.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable
from monai.utils import ensure_tuple, ensure_tuple_rep

from monai_inr import coords
from monai_inr.io import check_min_shape
from monai_inr.transforms.degradation import validate_downsampling_scale
from monai_inr.transforms.functional import resize_cell_centred
from monai_inr.transforms.utils import (
    _describe,
    as_affine,
    downsampling_factors,
    grid_affine,
    prepare_image,
    translate_affine,
    wrap_output,
)

__all__ = [
    "draw_voxel_indices",
    "sample_coordinates",
    "scale_grid",
    "reference_frame_coordinates",
    "RandScalePatchPairSampled",
    "RandCoordinateSampled",
    "FullGridCoordinatesd",
]


def draw_voxel_indices(
    spatial_shape: Sequence[int],
    num_coords: int | None,
    rng: np.random.RandomState | None = None,
    replace: bool = False,
) -> np.ndarray:
    """``(K, ndim)`` int64 voxel indices: ``num_coords`` drawn uniformly (``None``: every voxel in C order).

    Raises:
        ValueError: ``num_coords`` is not positive, or exceeds the number of voxels while ``replace`` is False.
    """
    shape = tuple(int(n) for n in spatial_shape)
    total = int(np.prod(shape))
    if num_coords is None:
        flat = np.arange(total)
    else:
        k = int(num_coords)
        if k < 1:
            raise ValueError(f"num_coords must be a positive integer, got {num_coords}.")
        if k > total and not replace:
            raise ValueError(
                f"num_coords={k} exceeds the {total} voxels of a {'x'.join(map(str, shape))} grid; "
                f"lower num_coords or sample with replace=True."
            )
        rng = np.random if rng is None else rng
        flat = rng.choice(total, size=k, replace=bool(replace))
    return np.stack(np.unravel_index(flat, shape), axis=-1).astype(np.int64)


def sample_coordinates(
    hr,
    num_coords: int | None,
    rng: np.random.RandomState | None = None,
    replace: bool = False,
    return_indices: bool = False,
):
    """Random voxels of ``hr`` ``(C, *spatial)``: ``(coord, cell, values[, indices])`` as float32 tensors.

    ``coord`` ``(K, ndim)`` are the cell-centred normalised coordinates of the voxels in ``hr``'s own frame (its FOV is
    [-1, 1]), ``cell`` ``(K, ndim)`` is ``2 / N`` per axis, ``values`` ``(K, C)`` are ``hr`` at those voxels, exactly
    (no interpolation), and ``indices`` ``(K, ndim)`` int64 the voxel indices. Voxels are drawn uniformly without
    replacement unless ``replace`` (``num_coords=None``: every voxel, C order). Use the transform's ``self.R`` as
    ``rng`` for reproducibility.
    """
    data = hr.as_tensor() if isinstance(hr, MetaTensor) else torch.as_tensor(hr)
    if data.ndim < 2:
        raise ValueError(f"sample_coordinates expects a channel-first image (C, *spatial), got {tuple(data.shape)}.")
    shape = tuple(data.shape[1:])
    idx = draw_voxel_indices(shape, num_coords, rng, replace)
    idx_t = torch.from_numpy(idx)
    values = data[(slice(None),) + tuple(idx_t.T.to(data.device))].T.to(torch.float32).contiguous()
    coord = coords.voxel_to_normalized(idx_t.to(torch.float64), shape).to(torch.float32).to(data.device)
    cell = coords.cell_size(shape, device=data.device)[None].expand(len(idx), -1).contiguous()
    return (coord, cell, values, idx_t) if return_indices else (coord, cell, values)


def scale_grid(scale_range: Sequence[float], scale_step: float | None) -> np.ndarray | None:
    """Allowed scales ``lo, lo + step, ... <= hi`` (rounded to 10 decimals), or ``None`` for a continuous range."""
    lo, hi = (float(v) for v in scale_range)
    if scale_step is None:
        return None
    step = float(scale_step)
    if not (np.isfinite(step) and step > 0):
        raise ValueError(f"scale_step must be positive (or None for continuous scales), got {scale_step}.")
    n = int(np.floor((hi - lo) / step + 1e-9))
    return np.round(lo + step * np.arange(n + 1), 10)


def _as_size(size: Sequence[int] | int, name: str) -> tuple[int, ...]:
    t = tuple(int(v) for v in ensure_tuple(size))
    if not t or any(v < 1 for v in t):
        raise ValueError(f"{name} must be positive integers, got {size}.")
    return t


class RandScalePatchPairSampled(Randomizable, MapTransform):
    """Random-scale LR/HR training pairs with sampled HR coordinates (ArSSR; LIIF-style arbitrary-scale training).

    ArSSR (Wu et al., "An Arbitrary Scale Super-Resolution Approach for 3D MR Images via Implicit Neural
    Representation", IEEE JBHI 27(2), 2023): per sample draw ``s`` from {2.0, 2.1, ..., 4.0}, crop an HR patch of
    ``round(10 s)^3`` voxels, make the ``10^3`` LR patch by cubic downsampling, and supervise ``K = 8000`` HR voxels
    drawn without replacement. Here:

    1. ``s`` is drawn uniformly from :func:`scale_grid` (one for all axes, or one per axis when ``isotropic=False``);
    2. the HR crop of ``round(lr_patch_size * s)`` voxels per axis is placed uniformly at random (optionally redrawn
       until ``min_foreground`` of it exceeds ``foreground_threshold``);
    3. the LR patch is :func:`~monai_inr.transforms.functional.resize_cell_centred` of the HR crop onto exactly
       ``lr_patch_size`` (order ``order``, same FOV); its affine is the crop's FOV grid (``coords.fov_affine``);
    4. ``num_coords`` HR crop voxels are drawn with :func:`sample_coordinates`; since the LR patch and the HR crop
       cover the same FOV, their coordinates are in the LR patch's normalised frame.

    Outputs per sample (a dict; a list of ``num_samples`` dicts when ``num_samples > 1``), other keys copied:

    * ``keys[i]``: LR patch ``(C, *lr_patch_size)`` float32 MetaTensor with its affine;
    * ``label_keys[i]``: ``(K, C)`` HR values;
    * ``coord_key``: ``(K, ndim)``; ``cell_key``: ``(K, ndim)`` = ``2 / N_hr``;
    * ``scale_key``: ``(ndim,)`` actual ``N_hr / N_lr``;
    * ``hr_keys[i]`` (optional): the HR crop with its affine (collatable only when the scale is fixed).

    Several ``keys`` (co-registered images on one grid) share the crop and the coordinates.

    Args:
        keys: HR images ``(C, *spatial)``, 2D or 3D (``len(lr_patch_size)`` spatial dims).
        lr_patch_size: LR patch size per axis.
        scale_range: ``(low, high)`` downsampling factors, ``1 <= low <= high``.
        scale_step: grid step of the scales (0.1 in ArSSR); ``None`` draws ``U(low, high)``.
        isotropic: one scale for all axes (``True``), independent per axis (``False``), or a probability in
            ``(0, 1)`` of drawing an isotropic scale (a mix of isotropic and anisotropic training pairs).
        num_coords: HR voxels per sample (``None``: all, only collatable with a fixed scale).
        replace: draw with replacement (needed when ``num_coords`` exceeds the smallest HR crop).
        num_samples: samples per input dict.
        order: spline order of the LR generation (3 = cubic as ArSSR); ``anti_alias``: optional Gaussian prefilter.
        foreground_threshold / min_foreground / max_tries: foreground-biased placement (off by default): up to
            ``max_tries`` placements, keeping the first whose fraction of voxels above the threshold (any channel of
            ``keys[0]``) reaches ``min_foreground``, else the best one.
        degradation: optional physical acquisition used instead of the spline resize for a fraction
            ``degradation_prob`` of the samples: called as ``degradation(hr_crop, scale=factors)`` with the HR crop
            ``(C, *hr)`` and the exact per-axis factors ``N_hr / N_lr``, it must return the LR patch ``(C,
            *lr_patch_size)`` covering the same FOV (e.g. :class:`~monai_inr.transforms.PhysicalAcquisition`: slice
            profile, k-space truncation, noise). A :class:`~monai.transforms.Randomizable` degradation draws from this
            transform's ``self.R``. Its noise level may be tied to the whole image: ``reference_key`` names a value
            of the input dict (e.g. the white-matter mean) passed on as ``reference=``.
        supervise_margin: LR voxels at each face of the patch that are seen by the encoder but not supervised (HR
            coordinates are drawn only inside); keeps patch-edge effects of k-space truncation and zero-padded
            convolutions out of the loss.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image",),
        lr_patch_size: Sequence[int] | int = (10, 10, 10),
        scale_range: Sequence[float] = (2.0, 4.0),
        scale_step: float | None = 0.1,
        isotropic: bool | float = True,
        num_coords: int | None = 8000,
        replace: bool = False,
        num_samples: int = 1,
        label_keys: KeysCollection = "label",
        coord_key: str = "coord",
        cell_key: str = "cell",
        scale_key: str = "scale",
        hr_keys: KeysCollection | None = None,
        order: int = 3,
        anti_alias: bool = False,
        foreground_threshold: float | None = None,
        min_foreground: float = 0.5,
        max_tries: int = 10,
        degradation: Any = None,
        degradation_prob: float = 1.0,
        reference_key: str | None = None,
        supervise_margin: int = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.lr_patch_size = _as_size(lr_patch_size, "lr_patch_size")
        nd = len(self.lr_patch_size)
        self.supervise_margin = int(supervise_margin)
        if self.supervise_margin < 0 or 2 * self.supervise_margin >= min(self.lr_patch_size):
            raise ValueError(
                f"supervise_margin={supervise_margin} must leave LR voxels inside lr_patch_size {self.lr_patch_size}."
            )
        if degradation is not None and not callable(degradation):
            raise ValueError(f"degradation must be callable, got {type(degradation).__name__}.")
        if not 0.0 <= float(degradation_prob) <= 1.0:
            raise ValueError(f"degradation_prob must be in [0, 1], got {degradation_prob}.")
        self.degradation = degradation
        self.degradation_prob = float(degradation_prob)
        self.reference_key = reference_key
        if len(tuple(scale_range)) != 2:
            raise ValueError(f"scale_range must be (low, high), got {scale_range}.")
        lo, hi = validate_downsampling_scale(tuple(scale_range), 2, name="scale_range")
        if hi < lo:
            raise ValueError(f"scale_range must be (low, high) with low <= high, got {tuple(scale_range)}.")
        self.scale_range = (lo, hi)
        self.scales = scale_grid(self.scale_range, scale_step)
        p_iso = float(isotropic)
        if not 0.0 <= p_iso <= 1.0:
            raise ValueError(f"isotropic must be a bool or a probability in [0, 1], got {isotropic}.")
        self.isotropic = p_iso
        self.num_coords = None if num_coords is None else int(num_coords)
        self.replace = bool(replace)
        smallest = int(np.prod(self._interior_shape(coords.scaled_shape(self.lr_patch_size, (lo,) * nd))))
        if self.num_coords is not None and (self.num_coords < 1 or (self.num_coords > smallest and not replace)):
            raise ValueError(
                f"num_coords={self.num_coords} must be between 1 and the {smallest} voxels of the smallest HR crop "
                f"(lr_patch_size {self.lr_patch_size} x scale {lo:g}); lower it, raise scale_range[0] or set "
                f"replace=True."
            )
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
        self.num_samples = int(num_samples)
        self.label_keys = ensure_tuple_rep(label_keys, len(self.keys))
        self.hr_keys = None if hr_keys is None else ensure_tuple_rep(hr_keys, len(self.keys))
        self.coord_key, self.cell_key, self.scale_key = coord_key, cell_key, scale_key
        self.order = int(order)
        self.anti_alias = bool(anti_alias)
        self.foreground_threshold = foreground_threshold
        self.min_foreground = float(min_foreground)
        self.max_tries = max(1, int(max_tries))
        self._scale: tuple[float, ...] = (lo,) * nd
        self._hr_size: tuple[int, ...] = self.lr_patch_size
        self._start: tuple[int, ...] = (0,) * nd

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        if isinstance(self.degradation, Randomizable):
            self.degradation.set_random_state(state=self.R)  # one stream: reproducible with the sampler's seed
        return self

    def _interior(self, hr_size: Sequence[int]) -> tuple[slice, ...]:
        """HR voxels whose centres lie inside the LR patch without ``supervise_margin`` voxels at each face."""
        if self.supervise_margin == 0:
            return tuple(slice(0, n) for n in hr_size)
        m = self.supervise_margin
        out = []
        for n_hr, n_lr in zip(hr_size, self.lr_patch_size):
            lo = int(np.ceil(m / n_lr * n_hr - 0.5 - 1e-9))
            hi = int(np.floor((n_lr - m) / n_lr * n_hr - 0.5 + 1e-9))
            out.append(slice(lo, hi + 1))
        return tuple(out)

    def _interior_shape(self, hr_size: Sequence[int]) -> tuple[int, ...]:
        return tuple(sl.stop - sl.start for sl in self._interior(hr_size))

    # ------------------------------------------------------------------------------------------------ random draws
    def _draw_scale(self) -> tuple[float, ...]:
        nd = len(self.lr_patch_size)
        iso = self.isotropic >= 1.0 or (self.isotropic > 0.0 and self.R.rand() < self.isotropic)
        n = 1 if iso else nd
        if self.scales is None:
            s = self.R.uniform(self.scale_range[0], self.scale_range[1], size=n)
        else:
            s = self.scales[self.R.randint(len(self.scales), size=n)]
        return tuple(float(v) for v in np.broadcast_to(s, (nd,)))

    def _draw_start(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(self.R.randint(0, n - h + 1)) for n, h in zip(spatial_shape, self._hr_size))

    def randomize(self, data: Any = None) -> None:
        """Draw the scale, HR crop size and start for an image of spatial shape ``data`` (and foreground ``data``)."""
        spatial_shape, fg = data if isinstance(data, tuple) and len(data) == 2 else (data, None)
        self._scale = self._draw_scale()
        self._hr_size = coords.scaled_shape(self.lr_patch_size, self._scale)
        if any(h > n for h, n in zip(self._hr_size, spatial_shape)):
            raise ValueError(
                f"RandScalePatchPairSampled: the image ({'x'.join(map(str, spatial_shape))}) is smaller than the "
                f"HR crop "
                f"{'x'.join(map(str, self._hr_size))} needed for lr_patch_size {self.lr_patch_size} at scale "
                f"{self._scale}; use a smaller lr_patch_size or scale_range, or pad the image."
            )
        if fg is None:
            self._start = self._draw_start(spatial_shape)
            return
        best, best_frac = None, -1.0
        for _ in range(self.max_tries):
            start = self._draw_start(spatial_shape)
            frac = float(fg[tuple(slice(s, s + h) for s, h in zip(start, self._hr_size))].float().mean())
            if frac > best_frac:
                best, best_frac = start, frac
            if frac >= self.min_foreground:
                break
        self._start = best  # type: ignore[assignment]

    # ------------------------------------------------------------------------------------------------------ apply
    def _check_size(self, spatial: Sequence[int], image: Any) -> None:
        """Refuse an image smaller than the HR crop of the largest scale in one sentence naming the file, whatever
        the random draw (a training set is checked on its first pass, not when an unlucky scale comes up)."""
        top = float(self.scale_range[1]) if self.scales is None else float(np.max(self.scales))
        hr = coords.scaled_shape(self.lr_patch_size, (top,) * len(self.lr_patch_size))
        name = str(getattr(image, "meta", {}).get("filename_or_obj", "a training image"))
        check_min_shape(spatial, hr, name, need=f"an LR patch of {'x'.join(map(str, self.lr_patch_size))} needs")

    def _one_sample(self, d: dict, images: list, affines: list, fg) -> dict:
        spatial = tuple(images[0].shape[1:])
        self._check_size(spatial, images[0])
        self.randomize((spatial, fg))
        crop = (slice(None),) + tuple(slice(s, s + h) for s, h in zip(self._start, self._hr_size))
        out = dict(d)
        hr_crops = []
        physical = self.degradation is not None and self.R.rand() < self.degradation_prob
        f = downsampling_factors(self._hr_size, self.lr_patch_size)
        for i, (key, img, aff) in enumerate(zip(self.keys, images, affines)):
            data = img.as_tensor() if isinstance(img, MetaTensor) else img
            hr = data[crop].to(torch.float32)
            hr_crops.append(hr)
            crop_affine = translate_affine(aff, self._start)
            lr_affine = grid_affine(crop_affine, self._hr_size, self.lr_patch_size)
            if physical:
                lr = self._degrade(hr, f, d)
                name = _describe("physical", f)
            else:
                lr = resize_cell_centred(hr, self.lr_patch_size, order=self.order, anti_alias=self.anti_alias)
                name = _describe("cubic" if self.order == 3 else f"spline{self.order}", f)
            out[key] = wrap_output(img, lr, lr_affine, f, name)
            if self.hr_keys is not None:
                out[self.hr_keys[i]] = wrap_output(img, hr.clone(), crop_affine)
        stacked = torch.cat(hr_crops, dim=0)
        inner = self._interior(self._hr_size)
        inner_shape = tuple(sl.stop - sl.start for sl in inner)
        _, cell, values, idx = sample_coordinates(
            stacked[(slice(None),) + inner], self.num_coords, self.R, self.replace, return_indices=True
        )
        idx = idx + torch.tensor([sl.start for sl in inner], dtype=idx.dtype)
        coord = coords.voxel_to_normalized(idx.to(torch.float64), self._hr_size).to(torch.float32)
        if inner_shape != tuple(self._hr_size):
            cell = coords.cell_size(self._hr_size)[None].expand(len(idx), -1).contiguous()
        c0 = 0
        for lk, hr in zip(self.label_keys, hr_crops):
            out[lk] = values[:, c0 : c0 + hr.shape[0]].contiguous()
            c0 += hr.shape[0]
        out[self.coord_key] = coord
        out[self.cell_key] = cell
        out[self.scale_key] = torch.tensor(downsampling_factors(self._hr_size, self.lr_patch_size), dtype=torch.float32)
        return out

    def _degrade(self, hr: torch.Tensor, factors: Sequence[float], d: Mapping) -> torch.Tensor:
        kwargs: dict[str, Any] = {"scale": tuple(float(v) for v in factors)}
        if self.reference_key is not None:
            if self.reference_key not in d:
                raise KeyError(f"RandScalePatchPairSampled: reference_key '{self.reference_key}' is not in the data.")
            kwargs["reference"] = float(torch.as_tensor(d[self.reference_key]).reshape(-1)[0])
        lr = self.degradation(hr, **kwargs)
        lr = lr.as_tensor() if isinstance(lr, MetaTensor) else torch.as_tensor(lr)
        if tuple(lr.shape) != (hr.shape[0], *self.lr_patch_size):
            raise ValueError(
                f"RandScalePatchPairSampled: the degradation returned shape {tuple(lr.shape)}, expected "
                f"{(hr.shape[0], *self.lr_patch_size)} for factors {tuple(factors)}."
            )
        return lr.to(torch.float32)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict | list[dict]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d if self.num_samples == 1 else [dict(d) for _ in range(self.num_samples)]
        if len(keys) != len(self.keys):
            raise ValueError("RandScalePatchPairSampled: allow_missing_keys is not supported with several keys.")
        images, affines = [], []
        nd = len(self.lr_patch_size)
        for key in keys:
            img, aff = prepare_image(d[key])
            if img.ndim != nd + 1:
                raise ValueError(
                    f"RandScalePatchPairSampled: '{key}' has shape {tuple(img.shape)}, expected (C, *spatial) with "
                    f"{nd} spatial dims to match lr_patch_size {self.lr_patch_size}."
                )
            if images and tuple(img.shape[1:]) != tuple(images[0].shape[1:]):
                raise ValueError(
                    f"RandScalePatchPairSampled: '{key}' has spatial shape {tuple(img.shape[1:])} but "
                    f"'{keys[0]}' has {tuple(images[0].shape[1:])}; all keys must share one grid."
                )
            images.append(img)
            affines.append(aff)
        fg = None
        if self.foreground_threshold is not None:
            first = images[0].as_tensor() if isinstance(images[0], MetaTensor) else images[0]
            fg = (first > self.foreground_threshold).any(dim=0)  # bool: only the candidate crops are averaged
        samples = [self._one_sample(d, images, affines, fg) for _ in range(self.num_samples)]
        return samples[0] if self.num_samples == 1 else samples


# ---------------------------------------------------------------------------------------------- coordinate sampling


def _pad(v: np.ndarray, r: int, fill: float) -> np.ndarray:
    if v.shape[-1] == r:
        return v
    pad = np.full(v.shape[:-1] + (r - v.shape[-1],), fill, dtype=np.float64)
    return np.concatenate([v.astype(np.float64), pad], axis=-1)


def reference_frame_coordinates(
    indices: np.ndarray,
    affine: Any,
    ref_shape: Sequence[int],
    ref_affine: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Voxel ``indices`` of an image with ``affine`` -> normalised coordinates and cell sizes in a reference grid.

    The mapping goes through world millimetres (``coords.voxel_to_world`` then ``coords.world_to_normalized`` of the
    reference grid); points outside the reference FOV get ``|coord| > 1``. The cell is the reference-frame bounding box
    of the source voxel: ``2 / N_ref[i] * sum_j |M[i, j]|`` with ``M = A_ref^-1 A`` (linear parts), i.e. the source
    spacing over the reference spacing times ``2 / N_ref`` for axis-aligned grids.
    """
    nd = indices.shape[-1]
    a, ra = as_affine(affine), as_affine(ref_affine)
    r = a.shape[0] - 1
    if ra.shape[0] - 1 != r:
        raise ValueError(
            f"the image affine is {r + 1}x{r + 1} but the reference affine is {ra.shape[0]}x{ra.shape[0]}."
        )
    world = coords.voxel_to_world(_pad(indices.astype(np.float64), r, 0.0), a)
    ref_shape_p = tuple(int(n) for n in ref_shape) + (1,) * (r - len(ref_shape))
    norm = np.asarray(coords.world_to_normalized(world, ref_shape_p, ra))[..., :nd]
    m = np.linalg.solve(ra[:r, :r], a[:r, :r])[:nd, :nd]
    cell = 2.0 / np.asarray(ref_shape[:nd], dtype=np.float64) * np.abs(m).sum(axis=1)
    return norm, np.broadcast_to(cell, norm.shape)


class _CoordinateSamplerBase(MapTransform):
    def __init__(
        self,
        keys: KeysCollection,
        num_coords: int | None,
        replace: bool,
        coord_keys: KeysCollection,
        cell_keys: KeysCollection,
        value_keys: KeysCollection,
        reference_key: str | None,
        reference_affine: Any | None,
        reference_shape: Sequence[int] | None,
        allow_missing_keys: bool,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if num_coords is not None and int(num_coords) < 1:
            raise ValueError(f"num_coords must be a positive integer or None, got {num_coords}.")
        self.num_coords = None if num_coords is None else int(num_coords)
        self.replace = bool(replace)
        n = len(self.keys)
        self.coord_keys = ensure_tuple_rep(coord_keys, n)
        self.cell_keys = ensure_tuple_rep(cell_keys, n)
        self.value_keys = ensure_tuple_rep(value_keys, n)
        outs = [*self.coord_keys, *self.cell_keys, *self.value_keys]
        if len(set(outs)) != len(outs):
            raise ValueError(
                f"{type(self).__name__}: output keys must be distinct, got coord_keys={self.coord_keys}, "
                f"cell_keys={self.cell_keys}, value_keys={self.value_keys}; name them per input key."
            )
        if reference_key is not None and (reference_affine is not None or reference_shape is not None):
            raise ValueError(f"{type(self).__name__}: give reference_key or reference_affine/shape, not both.")
        if (reference_affine is None) != (reference_shape is None):
            raise ValueError(f"{type(self).__name__}: reference_affine and reference_shape go together.")
        self.reference_key = reference_key
        self.reference_affine = None if reference_affine is None else as_affine(reference_affine)
        self.reference_shape = None if reference_shape is None else _as_size(reference_shape, "reference_shape")

    def _reference(self, d: Mapping) -> tuple[tuple[int, ...], np.ndarray] | None:
        if self.reference_key is not None:
            if self.reference_key not in d:
                raise KeyError(f"{type(self).__name__}: reference_key '{self.reference_key}' is not in the data.")
            ref, ref_aff = prepare_image(d[self.reference_key])
            return tuple(ref.shape[1:]), ref_aff
        if self.reference_affine is not None:
            return self.reference_shape, self.reference_affine  # type: ignore[return-value]
        return None

    def _apply(self, data: Mapping, rng: np.random.RandomState | None) -> dict:
        d = dict(data)
        ref = self._reference(d)
        out_keys = (self.coord_keys, self.cell_keys, self.value_keys)
        for key, coord_key, cell_key, value_key in self.key_iterator(d, *out_keys):
            img, aff = prepare_image(d[key])
            coord, cell, values, idx = sample_coordinates(img, self.num_coords, rng, self.replace, return_indices=True)
            if ref is not None:
                norm, rcell = reference_frame_coordinates(idx.numpy(), aff, ref[0], ref[1])
                coord = torch.as_tensor(norm, dtype=torch.float32)
                cell = torch.as_tensor(np.ascontiguousarray(rcell), dtype=torch.float32)
            d[coord_key], d[cell_key], d[value_key] = coord, cell, values
        return d


class RandCoordinateSampled(Randomizable, _CoordinateSamplerBase):
    """``num_coords`` random voxels of each image -> coordinates, cell sizes and values (subject-specific INRs).

    For each key, independently: ``coord_keys`` ``(K, ndim)`` normalised coordinates, ``cell_keys`` ``(K, ndim)``,
    ``value_keys`` ``(K, C)`` exact voxel values (:func:`sample_coordinates`). By default coordinates are in each
    image's own frame. With a reference grid (``reference_key`` naming another image in the dict, or
    ``reference_affine`` + ``reference_shape``) they are expressed in that grid's normalised frame through world
    coordinates (:func:`reference_frame_coordinates`): the multi-contrast INR (McGinnis, Shit et al., MICCAI 2023)
    fits two orthogonal anisotropic scans in one frame, and Nexus-INR (Zhang et al., arXiv:2508.03073, 2025) queries
    both contrasts on a unified HR grid. Every voxel is a candidate (background included, as McGinnis).

    Args:
        keys: images ``(C, *spatial)``; they keep their value in the output.
        num_coords: K per image; more than the image's voxels needs ``replace=True``.
        coord_keys / cell_keys / value_keys: output keys, one per input key (must be distinct).
    """

    def __init__(
        self,
        keys: KeysCollection,
        num_coords: int,
        replace: bool = False,
        coord_keys: KeysCollection = "coord",
        cell_keys: KeysCollection = "cell",
        value_keys: KeysCollection = "label",
        reference_key: str | None = None,
        reference_affine: Any | None = None,
        reference_shape: Sequence[int] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        if num_coords is None:
            raise ValueError("RandCoordinateSampled: num_coords is required; use FullGridCoordinatesd for every voxel.")
        _CoordinateSamplerBase.__init__(
            self, keys, num_coords, replace, coord_keys, cell_keys, value_keys,
            reference_key, reference_affine, reference_shape, allow_missing_keys,
        )  # fmt: skip

    def randomize(self, data: Any = None) -> None:  # draws happen inside sample_coordinates with self.R
        pass

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        return self._apply(data, self.R)


class FullGridCoordinatesd(_CoordinateSamplerBase):
    """Every voxel of each image -> coordinates, cells and values in C order (validation / full-volume targets).

    Same outputs and reference-frame options as :class:`RandCoordinateSampled`, deterministic; ``values`` reshaped to
    ``(*spatial, C)`` is the image moved channel-last.
    """

    def __init__(
        self,
        keys: KeysCollection,
        coord_keys: KeysCollection = "coord",
        cell_keys: KeysCollection = "cell",
        value_keys: KeysCollection = "label",
        reference_key: str | None = None,
        reference_affine: Any | None = None,
        reference_shape: Sequence[int] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(
            keys, None, False, coord_keys, cell_keys, value_keys,
            reference_key, reference_affine, reference_shape, allow_missing_keys,
        )  # fmt: skip

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        return self._apply(data, None)
