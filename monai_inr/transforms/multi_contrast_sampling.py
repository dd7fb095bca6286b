"""2D multi-contrast samples for Dual-ArbNet-style training and evaluation: slices, crop/pad rule, k-space pairs.

J. Zhang et al., "Dual Arbitrary Scale Super-Resolution for Multi-contrast MRI", MICCAI 2023, section 3: LR images by
centred k-space truncation (:class:`~monai_inr.transforms.KSpaceCrop`, amplitude-corrected), images "cropped to integer
multiples of 24" so every test scale (x1.5, 2, 3, 4, 6, 8) gives an exact LR size, 32x32 LR training patches with HR
patches of ``round(32 s)`` pixels, random flips and 90-degree rotations, complex data as 2 channels.

* :class:`SelectSliced` / :class:`RandSliced`: a 2D slice (same index for every key) of co-registered volumes; the
  slice's 4x4 affine maps its pixels to the world positions they had in the volume.
* :class:`CropToMultipled`: the documented crop/pad rule (centre crop, or zero pad, each in-plane axis to a multiple of
  ``multiple``), affine updated.
* :class:`ExactKSpaceCropd`: k-space truncation that refuses sizes the scale cannot divide exactly.
* :class:`RandPairedScalePatchd`: target LR/HR patch pair plus reference patch at the scales of a shared
  :class:`~monai_inr.engines.curriculum.CurriculumState`.
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable

from monai_inr.errors import InputError
from monai_inr.transforms import functional as Fn
from monai_inr.transforms.degradation import KSpaceCrop
from monai_inr.transforms.utils import as_affine, translate_affine

__all__ = [
    "slice_affine",
    "select_slice",
    "SelectSliced",
    "RandSliced",
    "crop_or_pad_to_multiple",
    "CropToMultipled",
    "exact_lr_size",
    "ExactKSpaceCropd",
    "RandPairedScalePatchd",
]


# ------------------------------------------------------------------------------------------------------------ slices


def slice_affine(affine: Any, axis: int, index: int) -> np.ndarray:
    """4x4 affine of slice ``index`` along spatial ``axis`` of a 3D grid: in-plane axes (the other two, in order) as
    columns 0 and 1, the slice normal as column 2, and the origin moved to the slice, so voxel ``(i, j, 0)`` of the
    slice is at the world position of the volume voxel it came from."""
    a = as_affine(affine)
    if a.shape != (4, 4):
        raise ValueError(f"a 3D volume needs a 4x4 affine, got {a.shape}.")
    plane = [d for d in range(3) if d != axis]
    out = np.eye(4)
    out[:3, 0], out[:3, 1], out[:3, 2] = a[:3, plane[0]], a[:3, plane[1]], a[:3, axis]
    out[:3, 3] = a[:3, 3] + a[:3, axis] * float(index)
    return out


def _meta_affine(img: Any) -> np.ndarray:
    return as_affine(img.affine) if isinstance(img, MetaTensor) else np.eye(4)


def select_slice(img: torch.Tensor, axis: int, index: int) -> torch.Tensor:
    """Slice ``index`` along spatial ``axis`` (0-2, channel excluded) of ``(C, D0, D1, D2)``; 2D ``(C, H, W)`` images
    (already a slice) are returned unchanged. MetaTensors get :func:`slice_affine`."""
    if img.ndim == 3:
        return img
    if img.ndim != 4:
        raise InputError(f"expected a channel-first 2D or 3D image, got shape {tuple(img.shape)}.")
    axis = int(axis)
    if not 0 <= axis <= 2:
        raise InputError(f"slice axis must be 0, 1 or 2, got {axis}.")
    n = img.shape[1 + axis]
    if not 0 <= int(index) < n:
        raise InputError(f"slice index {index} is outside the {n} slices along axis {axis}.")
    data = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
    out = data.select(1 + axis, int(index)).contiguous()
    if isinstance(img, MetaTensor):
        res = MetaTensor(out)
        res.copy_meta_from(img)
        res.affine = torch.as_tensor(slice_affine(_meta_affine(img), axis, int(index)), dtype=torch.float64)
        res.meta["slice_axis"], res.meta["slice_index"] = axis, int(index)
        return res
    return out


class SelectSliced(MapTransform):
    """The same slice of every key: index ``index`` or ``data[index_key]`` along ``axis`` (see :func:`select_slice`).

    Args:
        keys: co-registered volumes (same shape).
        axis: spatial slice axis (2 = the third array axis, axial for RAS volumes).
        index: fixed slice index (used when the item has no ``index_key``); ``None`` = the central slice.
        index_key: item key holding the slice index.
    """

    def __init__(
        self,
        keys: KeysCollection,
        axis: int = 2,
        index: int | None = None,
        index_key: str | None = "slice_index",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.axis, self.index, self.index_key = int(axis), index, index_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        idx = d.get(self.index_key) if self.index_key else None
        for key in self.key_iterator(d):
            img = d[key]
            i = idx if idx is not None else self.index
            if i is None:
                i = img.shape[1 + self.axis] // 2 if img.ndim == 4 else 0
            d[key] = select_slice(img, self.axis, int(np.asarray(i).reshape(-1)[0]))
        return d


class RandSliced(Randomizable, MapTransform):
    """A random slice (the same for every key) among those with enough foreground.

    A slice qualifies when the fraction of pixels of ``foreground_key`` (a mask, or the first key's image) above
    ``threshold`` times its maximum is at least ``min_foreground``; without any qualifying slice one is drawn from all.

    Args:
        keys: co-registered volumes ``(C, D0, D1, D2)``.
        axis: spatial slice axis.
        foreground_key: key whose foreground decides (default: the first key).
        threshold: relative intensity threshold of the foreground.
        min_foreground: fraction of foreground pixels a slice needs.
    """

    def __init__(
        self,
        keys: KeysCollection,
        axis: int = 2,
        foreground_key: str | None = None,
        threshold: float = 0.05,
        min_foreground: float = 0.1,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.axis = int(axis)
        self.foreground_key = foreground_key
        self.threshold = float(threshold)
        self.min_foreground = float(min_foreground)
        self._index = 0

    def randomize(self, data: Any = None) -> None:
        fractions = np.asarray(data)
        good = np.flatnonzero(fractions >= self.min_foreground)
        pool = good if good.size else np.arange(fractions.size)
        self._index = int(pool[self.R.randint(pool.size)])

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        key = self.foreground_key or self.first_key(d)
        ref = torch.as_tensor(d[key]).float()
        if ref.ndim != 4:
            raise InputError(f"RandSliced expects (C, D0, D1, D2) volumes, got shape {tuple(ref.shape)} for {key!r}.")
        fg = (ref > self.threshold * ref.max()).any(dim=0)
        dims = tuple(d_ for d_ in range(3) if d_ != self.axis)
        self.randomize(fg.float().mean(dim=dims).cpu().numpy())
        for k in self.key_iterator(d):
            d[k] = select_slice(d[k], self.axis, self._index)
        d["slice_index"] = self._index
        return d


# ---------------------------------------------------------------------------------------------------- crop/pad rule


def crop_or_pad_to_multiple(
    img: torch.Tensor, multiple: int | Sequence[int] = 24, mode: str = "crop", spatial_axes: Sequence[int] | None = None
) -> torch.Tensor:
    """Centre-crop (``mode="crop"``: the largest multiple that fits) or zero-pad (``"pad"``: the smallest multiple that
    holds the image) each of ``spatial_axes`` (default all) of ``(C, *spatial)`` to a multiple of ``multiple``.

    The rule for an axis of ``N`` pixels and target ``T``: crop ``start = (N - T) // 2`` (the extra pixel of an odd
    difference is removed at the far end); pad ``(T - N) // 2`` before and the rest after. MetaTensor affines move so
    every kept pixel keeps its world position. A crop that would leave no pixel (``N < multiple``) is an
    :class:`~monai_inr.errors.InputError`.
    """
    if mode not in ("crop", "pad"):
        raise ValueError(f"mode must be 'crop' or 'pad', got {mode!r}.")
    nd = img.ndim - 1
    axes = tuple(range(nd)) if spatial_axes is None else tuple(int(a) % nd for a in spatial_axes)
    mult = (int(multiple),) * len(axes) if np.ndim(multiple) == 0 else tuple(int(m) for m in multiple)  # type: ignore
    if len(mult) != len(axes) or any(m < 1 for m in mult):
        raise ValueError(f"multiple must be one positive integer or one per axis, got {multiple}.")
    data = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
    shift = [0.0] * nd
    for ax, m in zip(axes, mult):
        n = data.shape[1 + ax]
        if mode == "crop":
            t = (n // m) * m
            if t == 0:
                raise InputError(
                    f"an image axis of {n} pixels cannot be cropped to a multiple of {m}; pad it instead (mode='pad')."
                )
            start = (n - t) // 2
            data = data.narrow(1 + ax, start, t)
            shift[ax] = float(start)
        else:
            t = -(-n // m) * m
            before = (t - n) // 2
            pads = [0, 0] * nd
            pads[2 * (nd - 1 - ax)] = before
            pads[2 * (nd - 1 - ax) + 1] = t - n - before
            data = torch.nn.functional.pad(data, pads)
            shift[ax] = -float(before)
    data = data.contiguous()
    if isinstance(img, MetaTensor):
        res = MetaTensor(data)
        res.copy_meta_from(img)
        res.affine = torch.as_tensor(translate_affine(_meta_affine(img), shift), dtype=torch.float64)
        return res
    return data


class CropToMultipled(MapTransform):
    """Dictionary :func:`crop_or_pad_to_multiple` (Dual-ArbNet crops to multiples of 24, the least common multiple of
    the test scales' denominators, so x1.5 ... x8 all give integer LR sizes)."""

    def __init__(
        self,
        keys: KeysCollection,
        multiple: int | Sequence[int] = 24,
        mode: str = "crop",
        spatial_axes: Sequence[int] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.multiple, self.mode, self.spatial_axes = multiple, mode, spatial_axes

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = crop_or_pad_to_multiple(d[key], self.multiple, self.mode, self.spatial_axes)
        return d


# -------------------------------------------------------------------------------------------------- exact k-space


def exact_lr_size(n: int, scale: float, what: str = "image", tolerance: float = 1e-6) -> int:
    """``n / scale`` when it is an integer (within ``tolerance`` pixels), else an :class:`~monai_inr.errors.InputError`
    explaining the crop/pad rule; ``scale`` must be at least 1."""
    s = float(scale)
    if not (np.isfinite(s) and s >= 1.0):
        raise InputError(f"{what}: the k-space cropping factor must be a number >= 1, got {scale}.")
    m = n / s
    if abs(m - round(m)) > tolerance or round(m) < 1:
        raise InputError(
            f"{what}: an axis of {n} pixels cannot be k-space cropped by x{s:g} exactly ({n}/{s:g} = {m:.4g} is not an "
            f"integer); crop or pad the image to a multiple of the scale's denominator first (CropToMultipled, "
            f"e.g. multiple=24)."
        )
    return int(round(m))


class ExactKSpaceCropd(MapTransform):
    """:class:`~monai_inr.transforms.KSpaceCrop` of every key by the item's ``data[scale_key]`` (default
    ``scale``), refusing sizes the scale does not divide (:func:`exact_lr_size`): the evaluation's LR images then have
    exactly the nominal scale. ``spatial_axes`` default: all. Other arguments as :class:`KSpaceCrop`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        scale_key: str = "scale",
        scale: float | None = None,
        spatial_axes: Sequence[int] | None = None,
        output: str = "magnitude",
        complex_input: bool = False,
        align: str = "cell",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scale_key, self.scale, self.spatial_axes = scale_key, scale, spatial_axes
        self.crop = KSpaceCrop(None, spatial_axes, output, align, True, complex_input)  # type: ignore[arg-type]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        s = d.get(self.scale_key, self.scale)
        if s is None:
            raise ValueError(f"ExactKSpaceCropd: no {self.scale_key!r} in the item and no default scale.")
        s = float(np.asarray(s.detach().cpu() if isinstance(s, torch.Tensor) else s).reshape(-1)[0])
        for key in self.key_iterator(d):
            img = d[key]
            spatial = tuple(img.shape[1:])
            axes = range(len(spatial)) if self.spatial_axes is None else self.spatial_axes
            factors = [spatial[a] / exact_lr_size(spatial[a], s, what=str(key)) for a in axes]
            d[key] = self.crop(img, scale=factors)
        return d


# ------------------------------------------------------------------------------------------------ training patches


def _plain(x: torch.Tensor) -> torch.Tensor:
    return (x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)).float().contiguous()


class RandPairedScalePatchd(Randomizable, MapTransform):
    """Dual-ArbNet training sample: target LR/HR patch pair and a reference patch, at the curriculum's scales.

    For each call the scales ``(S_tar, S_ref)`` come from ``state.next_scales()`` (a
    :class:`~monai_inr.engines.curriculum.CurriculumState`, shared with the
    :class:`~monai_inr.engines.curriculum.CurRandomCurriculum` handler that sets its phase; a batch shares one pair), or
    are fixed with ``scales=(S_tar, S_ref)`` when no state is given. Then:

    1. an HR crop of ``N = round(lr_patch_size * S_tar)`` pixels per axis at a random position (optionally redrawn up
       to ``max_tries`` times until ``min_foreground`` of it is foreground), the same for target and reference (they
       must be co-registered 2D images of the same shape);
    2. the same random flips (vertical, horizontal) and 90-degree rotation (square patches) of all patches;
    3. target LR = the ``lr_patch_size`` LR voxels that exactly tile the HR crop (actual scale ``N / lr_patch_size``),
       reference = the ``round(N / S_ref)`` voxels tiling the reference crop (``S_ref = 1``: the HR crop itself),
       both from a k-space truncation:

       * ``lr_synthesis="slice"`` (default, the paper and its code): the **whole slice** is truncated to the band of
         its LR grid (the central ``round(n * l / N)`` frequencies of each ``n``-pixel axis) and the LR patch is that
         band-limited image sampled at the patch's LR voxel centres
         (:func:`~monai_inr.transforms.functional.bandlimited_sample`; exactly
         :class:`~monai_inr.transforms.KSpaceCrop` of the whole slice where the grids coincide). Training LR patches
         then carry the same blur and ringing as the whole-slice LR images the evaluation and a scanner make;
       * ``"patch"``: :class:`~monai_inr.transforms.KSpaceCrop` of the HR crop alone (the crop's edges wrap around,
         adding ringing no whole-slice LR image has; measured about 3 % of the mean signal at x3).

    Outputs (plain float32 tensors, collatable when the batch shares its scales):
    ``image`` ``(C, l, l)`` LR target, ``label`` ``(C', N, N)`` HR target, ``reference`` ``(C, M, M)``, ``scale``
    (actual ``N / l``) and ``ref_scale`` (actual ``N / M``), plus ``reference_type`` (``"HR"``, ``"LR"`` or
    ``"other"``).

    Args:
        keys: ``(target key, reference key)``.
        state: the shared curriculum state (or ``None`` with ``scales``).
        lr_patch_size: LR patch size ``l`` (32 in the paper), one or two numbers.
        output: ``"magnitude"`` (1 channel per complex image) or ``"complex"`` (real, imaginary channels).
        complex_input: the input images hold (real, imaginary) channel pairs.
        flip, rotate90: the augmentations (both on by default, as the paper).
        foreground_threshold, min_foreground, max_tries: foreground-biased crop placement (threshold relative to the
            target's maximum magnitude; ``min_foreground=0`` disables it).
        label_key, scale_key, ref_scale_key: output keys.
        scales: fixed ``(S_tar, S_ref)`` when ``state`` is ``None``.
        lr_synthesis: ``"slice"`` (whole-slice truncation, then paired crops) or ``"patch"`` (per-patch truncation).
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "reference"),
        state: Any = None,
        lr_patch_size: int | Sequence[int] = 32,
        output: str = "magnitude",
        complex_input: bool = False,
        flip: bool = True,
        rotate90: bool = True,
        foreground_threshold: float = 0.05,
        min_foreground: float = 0.2,
        max_tries: int = 10,
        label_key: str = "label",
        scale_key: str = "scale",
        ref_scale_key: str = "ref_scale",
        scales: Sequence[float] | None = None,
        lr_synthesis: str = "slice",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if lr_synthesis not in ("slice", "patch"):
            raise ValueError(f"lr_synthesis must be 'slice' or 'patch', got {lr_synthesis!r}.")
        self.lr_synthesis = lr_synthesis
        if len(self.keys) != 2:
            raise ValueError(f"RandPairedScalePatchd needs keys (target, reference), got {self.keys}.")
        if state is None and scales is None:
            raise ValueError("RandPairedScalePatchd needs a curriculum state or fixed scales=(S_tar, S_ref).")
        if output not in ("magnitude", "complex"):
            raise ValueError(f"output must be 'magnitude' or 'complex', got {output!r}.")
        if np.ndim(lr_patch_size) == 0:
            size: tuple[int, ...] = (int(lr_patch_size),) * 2  # type: ignore[arg-type]
        else:
            size = tuple(int(v) for v in lr_patch_size)  # type: ignore[union-attr]
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"lr_patch_size must be one or two positive integers, got {lr_patch_size}.")
        self.lr_patch_size = size
        self.state = state
        self.fixed = None if scales is None else tuple(float(s) for s in scales)
        self.output, self.complex_input = output, bool(complex_input)
        self.flip, self.rotate90 = bool(flip), bool(rotate90)
        self.foreground_threshold = float(foreground_threshold)
        self.min_foreground = float(min_foreground)
        self.max_tries = max(1, int(max_tries))
        self.label_key, self.scale_key, self.ref_scale_key = label_key, scale_key, ref_scale_key
        self.kspace = KSpaceCrop(None, None, output, "cell", True, self.complex_input)  # type: ignore[arg-type]
        self._aug = (0, False, False)

    def randomize(self, data: Any = None) -> None:
        self._aug = (
            int(self.R.randint(4)) if self.rotate90 else 0,
            bool(self.R.randint(2)) if self.flip else False,
            bool(self.R.randint(2)) if self.flip else False,
        )

    def _magnitude(self, x: torch.Tensor) -> torch.Tensor:
        if not self.complex_input:
            return x.abs()
        return torch.sqrt(x[0::2] ** 2 + x[1::2] ** 2)

    def _place(self, shape: Sequence[int], hr: Sequence[int], target: torch.Tensor) -> tuple[int, int]:
        best, best_fg = (0, 0), -1.0
        mag = self._magnitude(target).amax(dim=0)
        thr = self.foreground_threshold * float(mag.max())
        for _ in range(self.max_tries):
            start = tuple(int(self.R.randint(0, n - h + 1)) for n, h in zip(shape, hr))
            if self.min_foreground <= 0:
                return start  # type: ignore[return-value]
            fg = float((mag[start[0] : start[0] + hr[0], start[1] : start[1] + hr[1]] > thr).float().mean())
            if fg >= self.min_foreground:
                return start  # type: ignore[return-value]
            if fg > best_fg:
                best, best_fg = start, fg  # type: ignore[assignment]
        return best

    def _truncate(
        self, image: torch.Tensor, sl: tuple, start: Sequence[int], hr: Sequence[int], size: Sequence[int]
    ) -> torch.Tensor:
        """The ``size`` LR voxels tiling the HR crop ``image[sl]`` (HR start ``start``, shape ``hr``): a k-space
        truncation of the whole slice (``"slice"``) or of the crop alone (``"patch"``), as output channels."""
        if self.lr_synthesis == "patch":
            return self.kspace(image[sl], affine=np.eye(3), scale=[h / m for h, m in zip(hr, size)])
        bands, positions = [], []
        for n, s0, h, m in zip(image.shape[1:], start, hr, size):
            bands.append(int(min(n, max(1, round(n * m / h)))))
            positions.append(s0 + (np.arange(m) + 0.5) * (h / m) - 0.5)
        z = Fn.complex_from_channels(image, self.complex_input, "RandPairedScalePatchd")
        y = Fn.bandlimited_sample(z, bands, positions, dims=(1, 2))
        return Fn.complex_to_channels(y, self.output).to(torch.float32)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        k, fv, fh = self._aug
        if fv:
            x = x.flip(1)
        if fh:
            x = x.flip(2)
        if k and x.shape[1] == x.shape[2]:
            x = torch.rot90(x, k, dims=(1, 2))
        return x

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        tkey, rkey = self.keys
        target = torch.as_tensor(d[tkey].as_tensor() if isinstance(d[tkey], MetaTensor) else d[tkey]).float()
        ref = torch.as_tensor(d[rkey].as_tensor() if isinstance(d[rkey], MetaTensor) else d[rkey]).float()
        if target.ndim != 3 or ref.ndim != 3:
            raise InputError(
                f"RandPairedScalePatchd expects 2D (C, H, W) images, got {tuple(target.shape)} and {tuple(ref.shape)}; "
                f"select a slice first (RandSliced)."
            )
        if target.shape[0] != ref.shape[0]:
            raise InputError(
                f"the target has {target.shape[0]} channels but the reference has {ref.shape[0]}; both must be "
                f"magnitude or both complex."
            )
        if target.shape[1:] != ref.shape[1:]:
            raise InputError(
                f"training needs co-registered target and reference slices of one shape, got {tuple(target.shape[1:])} "
                f"and {tuple(ref.shape[1:])}."
            )
        s_tar, s_ref = self.fixed if self.state is None else self.state.next_scales()
        if s_tar < 1 or s_ref < 1:
            raise ValueError(f"scales must be >= 1, got S_tar={s_tar}, S_ref={s_ref}.")
        hr = tuple(int(round(l * s_tar)) for l in self.lr_patch_size)
        shape = tuple(target.shape[1:])
        if any(h > n for h, n in zip(hr, shape)):
            raise InputError(
                f"the {shape[0]}x{shape[1]} slice is smaller than the {hr[0]}x{hr[1]} HR patch needed for an LR "
                f"patch of {self.lr_patch_size[0]}x{self.lr_patch_size[1]} at scale {s_tar:g}; lower lr_patch_size "
                f"or the scale range."
            )
        self.randomize()
        start = self._place(shape, hr, target)
        sl = (slice(None), slice(start[0], start[0] + hr[0]), slice(start[1], start[1] + hr[1]))
        lr_scale = [h / l for h, l in zip(hr, self.lr_patch_size)]
        m_ref = tuple(max(1, int(round(h / s_ref))) for h in hr)
        lr = self._truncate(target, sl, start, hr, self.lr_patch_size)
        if m_ref == hr and not (self.complex_input and self.output == "magnitude"):
            r_out = ref[sl].clone()
        else:
            r_out = self._truncate(ref, sl, start, hr, m_ref)
        t_hr = target[sl]
        label = self._magnitude(t_hr) if (self.complex_input and self.output == "magnitude") else t_hr
        d[tkey] = _plain(self._augment(lr))
        d[rkey] = _plain(self._augment(r_out))
        d[self.label_key] = self._augment(label).contiguous()
        actual_tar = float(np.sqrt(lr_scale[0] * lr_scale[1]))
        actual_ref = float(np.sqrt(hr[0] * hr[1] / (m_ref[0] * m_ref[1])))
        d[self.scale_key] = torch.tensor(actual_tar, dtype=torch.float32)
        d[self.ref_scale_key] = torch.tensor(actual_ref, dtype=torch.float32)
        d["reference_type"] = "HR" if m_ref == hr else ("LR" if m_ref == self.lr_patch_size else "other")
        return d
