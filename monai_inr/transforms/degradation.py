"""Degradations that turn a high-resolution (HR) MR image into the low-resolution (LR) input of an INR method.

Every transform takes a channel-first image ``(C, *spatial)`` (2D or 3D): a MetaTensor (``LoadImaged`` +
``EnsureChannelFirstd``) or a numpy/torch array with an explicit ``affine``. It returns a float32 MetaTensor (plain
tensor when ``monai.data.set_track_meta(False)``) whose ``affine`` describes the new grid, so ``SaveImaged`` writes
correct geometry, and whose metadata records the per-axis spacing ratio LR/HR under
:data:`~monai_inr.transforms.utils.DEGRADATION_SCALE_KEY` (multiplied over chained degradations) and a readable name
under :data:`~monai_inr.transforms.utils.DEGRADATION_KEY`. Grid-changing transforms also expose
``output_geometry(spatial_shape, affine) -> (shape, affine)``. Inputs are never modified.

Scales are downsampling factors ``s = N_hr / N_lr >= 1`` (one number or one per axis); the LR size is
``round(N / s)`` (:func:`monai_inr.coords.scaled_shape`, at least 1) and the recorded scale is the actual
``N / round(N / s)``. FOV-preserving grids use :func:`monai_inr.coords.fov_affine`: the FOV centre is kept and the
first voxel centre moves by ``(f - 1) / 2`` input voxels, ``f = N_in / N_out``.
"""

from __future__ import annotations

import math
from typing import Hashable, Literal, Mapping, Sequence

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, Transform
from monai.transforms import RandRicianNoise as _MonaiRandRicianNoise
from monai.transforms import RandRicianNoised as _MonaiRandRicianNoised
from monai.utils import TransformBackends, ensure_tuple_rep

from monai_inr import coords
from monai_inr.transforms import functional as Fn
from monai_inr.transforms.utils import (
    NOISE_REFERENCE_KEY,
    NOISE_SIGMA_KEY,
    SNR_KEY,
    _describe,
    as_affine,
    downsampling_factors,
    grid_affine,
    prepare_image,
    wrap_output,
)

__all__ = [
    "validate_downsampling_scale",
    "CubicDownsample",
    "CubicDownsampled",
    "KSpaceCrop",
    "KSpaceCropd",
    "ThickSliceAcquisition",
    "ThickSliceAcquisitiond",
    "RandRicianNoise",
    "RandRicianNoised",
    "StrideDecimation",
    "StrideDecimationd",
    "white_matter_reference",
    "RandRicianNoiseSNR",
    "RandRicianNoiseSNRd",
    "PhysicalAcquisition",
    "PhysicalAcquisitiond",
    "RandSmoothPhase",
    "RandSmoothPhased",
]


def validate_downsampling_scale(scale: float | Sequence[float], ndim: int | None = None, name: str = "scale"):
    """Per-axis downsampling factors; ``ValueError`` unless every factor is finite and ``>= 1``.

    With ``ndim=None`` only the values are checked (one number, or as many as given) and returned as a tuple.
    """
    n = ndim
    if n is None:
        n = 1 if np.ndim(scale) == 0 else len(scale)  # type: ignore[arg-type]
    s = coords.as_scale_tuple(scale, n, name=name)
    if any(v < 1 for v in s):
        raise ValueError(
            f"{name} is a downsampling factor N_hr / N_lr and must be >= 1 on every axis, got {s}; "
            f"use an upsampling/inference path for factors below 1."
        )
    return s


def _spatial_axes(axes: int | Sequence[int] | None, nd: int, what: str) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(nd))
    out = []
    for a in (axes,) if isinstance(axes, (int, np.integer)) else axes:
        a = int(a)
        if not -nd <= a < nd:
            raise ValueError(f"{what}: spatial axis {a} is out of range for a {nd}D image.")
        out.append(a % nd)
    if len(set(out)) != len(out):
        raise ValueError(f"{what}: repeated spatial axes {tuple(axes)}.")  # type: ignore[arg-type]
    return tuple(out)


def _pick_scale(call_scale, default_scale, what: str):
    scale = default_scale if call_scale is None else call_scale
    if scale is None:
        raise ValueError(f"{what}: no scale given (set scale, or pass one for this call / through scale_key).")
    return scale


def _item_scale(d: Mapping, scale_key: str | None):
    """The per-item scale ``d[scale_key]`` as a float or tuple (``None`` when absent)."""
    if scale_key is None or scale_key not in d:
        return None
    v = d[scale_key]
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    v = np.asarray(v, dtype=np.float64)
    return float(v) if v.ndim == 0 else tuple(float(x) for x in v.reshape(-1))


# ------------------------------------------------------------------------------------------------- cubic downsampling


class CubicDownsample(Transform):
    """Spline downsampling onto a cell-centred grid covering the same FOV (ArSSR's LR generation).

    ArSSR (Wu et al., "An Arbitrary Scale Super-Resolution Approach for 3D MR Images via Implicit Neural
    Representation", IEEE JBHI 27(2), 2023) makes LR inputs with ``scipy.ndimage.zoom(hr, 1/s, order=3)`` and no
    anti-aliasing. This transform uses the same cubic B-spline but with cell-centred alignment
    (:func:`~monai_inr.transforms.functional.resize_cell_centred`), so the LR grid covers exactly the HR FOV and its
    affine (:func:`monai_inr.coords.fov_affine`) keeps the FOV centre; upstream's corner alignment shifts the grid.

    Args:
        scale: downsampling factor ``N_hr / N_lr >= 1``, one number or one per spatial axis. Output shape
            ``round(N / scale)``.
        order: spline order (3 cubic; 1 linear; 0 nearest, e.g. for label maps).
        anti_alias: optional Gaussian prefilter, ``sigma = (f - 1) / 2`` HR voxels (off in ArSSR).
        mode: scipy boundary mode (default half-sample symmetric ``"reflect"``).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, scale: float | Sequence[float] | None, order: int = 3, anti_alias: bool = False, mode: str = "reflect"
    ) -> None:
        if scale is not None:
            validate_downsampling_scale(scale)
        self.scale = scale
        self.order = int(order)
        self.anti_alias = bool(anti_alias)
        self.mode = mode

    def output_geometry(
        self, spatial_shape: Sequence[int], affine, scale: float | Sequence[float] | None = None
    ) -> tuple[tuple[int, ...], np.ndarray]:
        """LR shape and affine for an HR grid of ``spatial_shape`` with ``affine`` (``scale`` overrides the default)."""
        s = validate_downsampling_scale(_pick_scale(scale, self.scale, "CubicDownsample"), len(spatial_shape))
        shape = coords.scaled_shape(spatial_shape, [1.0 / v for v in s])
        return shape, grid_affine(affine, spatial_shape, shape)

    def __call__(
        self, img, affine=None, order: int | None = None, scale: float | Sequence[float] | None = None
    ) -> torch.Tensor:
        """Downsample ``img`` ``(C, *spatial)``; ``affine``/``order``/``scale`` override the defaults for this call."""
        t, a = prepare_image(img, affine)
        spatial = tuple(t.shape[1:])
        shape, out_affine = self.output_geometry(spatial, a, scale)
        o = self.order if order is None else int(order)
        out = Fn.resize_cell_centred(t, shape, order=o, mode=self.mode, anti_alias=self.anti_alias)
        f = downsampling_factors(spatial, shape)
        return wrap_output(t, out, out_affine, f, _describe("cubic" if o == 3 else f"spline{o}", f))


class CubicDownsampled(MapTransform):
    """Dictionary-based :class:`CubicDownsample`; ``order`` may be given per key (e.g. ``(3, 0)`` for image, label).

    ``scale_key``: read the factor of each item from ``data[scale_key]`` (a number or one per axis, e.g. the evaluation
    datalists of :func:`monai_inr.evaluation.with_scales`), falling back to ``scale`` when the item has none.
    """

    backend = CubicDownsample.backend

    def __init__(
        self,
        keys: KeysCollection,
        scale: float | Sequence[float] | None = None,
        order: int | Sequence[int] = 3,
        anti_alias: bool = False,
        mode: str = "reflect",
        scale_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if scale is None and scale_key is None:
            raise ValueError("CubicDownsampled: give a scale, or a scale_key naming the per-item scale.")
        self.order = ensure_tuple_rep(order, len(self.keys))
        self.scale_key = scale_key
        self.downsample = CubicDownsample(scale, order=self.order[0], anti_alias=anti_alias, mode=mode)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        scale = _item_scale(d, self.scale_key)
        for key, order in self.key_iterator(d, self.order):
            d[key] = self.downsample(d[key], order=order, scale=scale)
        return d


# -------------------------------------------------------------------------------------------------- k-space cropping


class KSpaceCrop(Transform):
    """Centred k-space truncation with amplitude correction (Dual-ArbNet's LR generation), 2D or 3D.

    Dual-ArbNet (Zhang et al., "Dual Arbitrary Scale Super-Resolution for Multi-Contrast MRI", MICCAI 2023) keeps the
    central ``round(N / s)`` block of the unitary centred FFT along each in-plane axis and transforms back, giving a
    complex LR image of the same FOV; the code divides the LR image by ``sqrt(s1 s2)`` so intensities stay on the HR
    scale. See :func:`~monai_inr.transforms.functional.kspace_crop` for the exact crop rule
    (indices ``[N//2 - M//2, N//2 - M//2 + M)`` of the centred spectrum, DC kept at ``M // 2``).

    Sizes that cannot be honoured: ``M = round(N / s)`` (at least 1), so the actual factor is ``N / M`` (recorded in
    the metadata and the affine). Crop ``N`` to a multiple of the LR size beforehand (Dual-ArbNet crops to multiples
    of 24) when the exact factor matters.

    Args:
        scale: downsampling factor ``>= 1``, one number or one per entry of ``spatial_axes``.
        spatial_axes: spatial axes (0-based, channel excluded) to truncate; ``None`` = all (e.g. ``(0, 1)`` of a 3D
            volume for 2D in-plane truncation).
        output: ``"magnitude"`` (C channels), ``"real"`` (C channels, real part) or ``"complex"`` (2 channels per
            input channel: real, imaginary, interleaved ``re_0, im_0, re_1, im_1, ...``).
        align: ``"cell"`` (default) puts the samples on the cell-centred grid of ``coords.fov_affine`` with a
            sub-voxel linear phase (FOV centre kept, exact for band-limited images); ``"dft"`` is the plain crop of the
            Dual-ArbNet code, whose sample positions differ from the cell-centred grid by ``-eps`` FOV
            (:func:`~monai_inr.transforms.functional.kspace_alignment_shift`; e.g. ``-(s - 1) / 2`` HR voxels for even
            sizes); the affine is shifted accordingly, so both options have correct geometry.
        amplitude_correction: multiply by ``sqrt(M / N)`` per truncated axis, undoing the ``sqrt(N / M)`` gain of the
            unitary crop (mean intensity kept exactly).
        complex_input: the input channels are (real, imaginary) pairs; complex-dtype tensors are always complex input.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        scale: float | Sequence[float] | None,
        spatial_axes: int | Sequence[int] | None = None,
        output: Literal["magnitude", "real", "complex"] = "magnitude",
        align: Literal["cell", "dft"] = "cell",
        amplitude_correction: bool = True,
        complex_input: bool = False,
    ) -> None:
        if scale is not None:
            validate_downsampling_scale(scale)
        if output not in ("magnitude", "real", "complex"):
            raise ValueError(f"KSpaceCrop: output must be 'magnitude', 'real' or 'complex', got {output!r}.")
        if align not in ("cell", "dft"):
            raise ValueError(f"KSpaceCrop: align must be 'cell' or 'dft', got {align!r}.")
        self.scale = scale
        self.spatial_axes = spatial_axes
        self.output = output
        self.align = align
        self.amplitude_correction = bool(amplitude_correction)
        self.complex_input = bool(complex_input)

    def _axes_sizes(self, spatial_shape: Sequence[int], scale=None) -> tuple[tuple[int, ...], tuple[int, ...]]:
        axes = _spatial_axes(self.spatial_axes, len(spatial_shape), "KSpaceCrop")
        s = validate_downsampling_scale(_pick_scale(scale, self.scale, "KSpaceCrop"), len(axes))
        sizes = coords.scaled_shape([spatial_shape[a] for a in axes], [1.0 / v for v in s])
        return axes, sizes

    def output_geometry(
        self, spatial_shape: Sequence[int], affine, scale: float | Sequence[float] | None = None
    ) -> tuple[tuple[int, ...], np.ndarray]:
        """LR shape and affine (including the ``align="dft"`` offset) for an HR grid of ``spatial_shape``."""
        axes, sizes = self._axes_sizes(spatial_shape, scale)
        shape = list(spatial_shape)
        for a, m in zip(axes, sizes):
            shape[a] = m
        out_affine = grid_affine(affine, spatial_shape, shape)
        if self.align == "dft":
            a_in = as_affine(affine)
            r = a_in.shape[0] - 1
            shift = np.zeros(r)  # in HR voxels
            for a, m in zip(axes, sizes):
                shift[a] = -Fn.kspace_alignment_shift(spatial_shape[a], m) * spatial_shape[a]
            out_affine[:r, r] += a_in[:r, :r] @ shift
        return tuple(shape), out_affine

    def __call__(self, img, affine=None, scale: float | Sequence[float] | None = None) -> torch.Tensor:
        """Truncate ``img`` ``(C, *spatial)``; ``affine``/``scale`` override the defaults for this call."""
        t, a = prepare_image(img, affine, dtype=None)
        data = t.as_tensor() if hasattr(t, "as_tensor") else t
        z = Fn.complex_from_channels(data, self.complex_input, "KSpaceCrop")
        spatial = tuple(data.shape[1:])
        axes, sizes = self._axes_sizes(spatial, scale)
        shape, out_affine = self.output_geometry(spatial, a, scale)
        dims = [1 + ax for ax in axes]
        y = Fn.kspace_crop(z, sizes, dims, align=self.align, amplitude_correction=self.amplitude_correction)
        out = Fn.complex_to_channels(y, self.output).to(torch.float32).contiguous()
        f = downsampling_factors(spatial, shape)
        return wrap_output(t, out, out_affine, f, _describe("kspace", f))


class KSpaceCropd(MapTransform):
    """Dictionary-based :class:`KSpaceCrop` (same parameters for every key; ``scale_key`` as in
    :class:`CubicDownsampled`)."""

    backend = KSpaceCrop.backend

    def __init__(
        self,
        keys: KeysCollection,
        scale: float | Sequence[float] | None = None,
        spatial_axes: int | Sequence[int] | None = None,
        output: Literal["magnitude", "real", "complex"] = "magnitude",
        align: Literal["cell", "dft"] = "cell",
        amplitude_correction: bool = True,
        complex_input: bool = False,
        scale_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if scale is None and scale_key is None:
            raise ValueError("KSpaceCropd: give a scale, or a scale_key naming the per-item scale.")
        self.scale_key = scale_key
        self.crop = KSpaceCrop(scale, spatial_axes, output, align, amplitude_correction, complex_input)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        scale = _item_scale(d, self.scale_key)
        for key in self.key_iterator(d):
            d[key] = self.crop(d[key], scale=scale)
        return d


# -------------------------------------------------------------------------------------------------------- thick slices


class ThickSliceAcquisition(Transform):
    """Simulate an acquisition with thick slices along one spatial axis (slice-profile blur + slice sampling).

    Used to make the anisotropic LR scans of the multi-contrast INR (McGinnis, Shit et al., "Single-subject
    Multi-contrast MRI Super-resolution via Implicit Neural Representations", MICCAI 2023: 4 mm axial T1w and coronal
    T2w from 1 mm) and Nexus-INR (Zhang et al., arXiv:2508.03073, 2025: x2 along z for T1w, x4 along y for T2w).

    The HR image is integrated against the slice profile centred at each of ``M = round(N / factor)`` cell-centred
    slice positions (:func:`~monai_inr.transforms.functional.slice_profile_matrix`): ``"box"`` (uniform slab of width
    ``thickness``; for integer ``factor`` dividing ``N`` each slice is the mean of ``factor`` HR voxels),
    ``"gaussian"`` (FWHM ``thickness``), or ``"none"`` (point sampling of the slice centres with a spline of ``order``,
    McGinnis' code: order 3, no blur). Output affine: spacing along ``axis`` times ``N / M`` (= ``factor`` when it
    divides ``N``), FOV centre kept (:func:`monai_inr.coords.fov_affine`).

    Args:
        axis: spatial axis (0-based, channel excluded; negative counts from the end).
        factor: slice spacing in HR voxels, ``>= 1``.
        profile: ``"box"``, ``"gaussian"`` or ``"none"``.
        thickness: profile width (box width or Gaussian FWHM) in HR voxels; default the slice spacing ``N / M``
            minus the gap (contiguous slices when ``gap=0``).
        order: spline order for ``profile="none"``.
        gap: gap between consecutive slices as a fraction of the slice spacing, in ``[0, 1)`` (clinical "slice
            spacing = thickness + gap"): the profile width is ``(1 - gap) N / M``. Only without an explicit
            ``thickness``.
    """

    backend = [TransformBackends.NUMPY]

    def __init__(
        self,
        axis: int,
        factor: float,
        profile: Literal["box", "gaussian", "none"] = "box",
        thickness: float | None = None,
        order: int = 3,
        gap: float = 0.0,
    ) -> None:
        validate_downsampling_scale(factor, 1, name="factor")
        if not (np.isfinite(gap) and 0.0 <= float(gap) < 1.0):
            raise ValueError(
                f"ThickSliceAcquisition: gap must be a fraction of the slice spacing in [0, 1), got {gap}."
            )
        if thickness is not None and gap:
            raise ValueError("ThickSliceAcquisition: give either thickness or gap, not both.")
        if profile not in ("box", "gaussian", "none"):
            raise ValueError(f"ThickSliceAcquisition: profile must be 'box', 'gaussian' or 'none', got {profile!r}.")
        if thickness is not None and not (np.isfinite(thickness) and thickness > 0):
            raise ValueError(f"ThickSliceAcquisition: thickness must be positive, got {thickness}.")
        self.axis = int(axis)
        self.factor = float(factor)
        self.profile = profile
        self.thickness = thickness
        self.order = int(order)
        self.gap = float(gap)

    def output_geometry(self, spatial_shape: Sequence[int], affine) -> tuple[tuple[int, ...], np.ndarray]:
        """LR shape and affine for an HR grid of ``spatial_shape`` with ``affine``."""
        (ax,) = _spatial_axes(self.axis, len(spatial_shape), "ThickSliceAcquisition")
        shape = list(spatial_shape)
        shape[ax] = coords.scaled_shape([spatial_shape[ax]], 1.0 / self.factor)[0]
        return tuple(shape), grid_affine(affine, spatial_shape, shape)

    def __call__(self, img, affine=None) -> torch.Tensor:
        t, a = prepare_image(img, affine)
        spatial = tuple(t.shape[1:])
        (ax,) = _spatial_axes(self.axis, len(spatial), "ThickSliceAcquisition")
        shape, out_affine = self.output_geometry(spatial, a)
        thickness = self.thickness
        if thickness is None and self.gap:
            thickness = spatial[ax] / shape[ax] * (1.0 - self.gap)
        out = Fn.thick_slice(t, ax, shape[ax], profile=self.profile, thickness=thickness, order=self.order)
        f = downsampling_factors(spatial, shape)
        gap = f",gap={self.gap:g}" if self.gap else ""
        return wrap_output(t, out, out_affine, f, f"thick_slice_{self.profile}(axis={ax},{f[ax]:g}{gap})")


class ThickSliceAcquisitiond(MapTransform):
    """Dictionary-based :class:`ThickSliceAcquisition`."""

    backend = ThickSliceAcquisition.backend

    def __init__(
        self,
        keys: KeysCollection,
        axis: int,
        factor: float,
        profile: Literal["box", "gaussian", "none"] = "box",
        thickness: float | None = None,
        order: int = 3,
        gap: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.acquire = ThickSliceAcquisition(axis, factor, profile, thickness, order, gap)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.acquire(d[key])
        return d


# ------------------------------------------------------------------------------------------------------- Rician noise


def _check_value_range(value_range, relative: bool) -> tuple[float, float] | None:
    if value_range is None:
        return None
    lo, hi = (float(v) for v in value_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise ValueError(f"RandRicianNoise: value_range must be (low, high) with high > low, got {value_range}.")
    if relative:
        raise ValueError("RandRicianNoise: give either relative=True (std times image std) or value_range, not both.")
    return lo, hi


class RandRicianNoise(_MonaiRandRicianNoise):
    """MONAI's :class:`monai.transforms.RandRicianNoise` plus the ArRFR options; the noise draw is MONAI's (``self.R``).

    ArRFR (Yang, 2025; sodium + T2w fusion) degrades training inputs with Rician noise of sigma 0.4 on [0, 1]-normalised
    data and then re-normalises to [0, 1]; its code uses ``relative=True`` (sigma = 0.4 x image std) on raw magnitudes
    followed by min-max. Both are expressible here:

    * ``value_range=(lo, hi)``: sigma (``std``, or its draw when ``sample_std``) is a fraction of ``hi - lo``
      (paper: ``std=0.4, value_range=(0, 1)``);
    * ``renormalize=True``: min-max the noisy image (per channel when ``channel_wise``) onto ``value_range``
      (default [0, 1]).

    The noise is ``sqrt((x + n1)^2 + n2^2)`` with ``n1, n2 ~ N(mean, sigma)`` (Gudbjartsson & Patz, MRM 1995); on a zero
    background its mean is ``sigma * sqrt(pi / 2)``. Inputs are not modified (MONAI's channel-wise path writes in place,
    so the image is copied first). Other arguments: see MONAI.
    """

    def __init__(
        self,
        prob: float = 0.1,
        mean: Sequence[float] | float = 0.0,
        std: Sequence[float] | float = 1.0,
        channel_wise: bool = False,
        relative: bool = False,
        sample_std: bool = True,
        value_range: tuple[float, float] | None = None,
        renormalize: bool = False,
        dtype: DtypeLike = np.float32,
    ) -> None:
        vr = _check_value_range(value_range, relative)
        if vr is not None:
            width = vr[1] - vr[0]
            std = [float(s) * width for s in std] if isinstance(std, (list, tuple)) else float(std) * width
        super().__init__(prob, mean, std, channel_wise, relative, sample_std, dtype)
        self.value_range = vr
        self.renormalize = bool(renormalize)

    def __call__(self, img, randomize: bool = True):
        if isinstance(img, torch.Tensor):
            img = img.clone()
        elif isinstance(img, np.ndarray):
            img = img.copy()
        out = super().__call__(img, randomize=randomize)
        if self._do_transform and self.renormalize:
            lo, hi = self.value_range or (0.0, 1.0)
            dims = tuple(range(1, out.ndim)) if self.channel_wise else tuple(range(out.ndim))
            mn = torch.amin(out, dim=dims, keepdim=True)
            mx = torch.amax(out, dim=dims, keepdim=True)
            out = lo + (out - mn) / torch.clamp(mx - mn, min=torch.finfo(out.dtype).tiny) * (hi - lo)
        return out


class RandRicianNoised(_MonaiRandRicianNoised):
    """Dictionary-based :class:`RandRicianNoise` (MONAI's dictionary transform with the extended array transform)."""

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        mean: Sequence[float] | float = 0.0,
        std: Sequence[float] | float = 1.0,
        channel_wise: bool = False,
        relative: bool = False,
        sample_std: bool = True,
        value_range: tuple[float, float] | None = None,
        renormalize: bool = False,
        dtype: DtypeLike = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, mean, std, channel_wise, relative, sample_std, dtype, allow_missing_keys)
        self.rand_rician_noise = RandRicianNoise(
            1.0, mean, std, channel_wise, relative, sample_std, value_range, renormalize, dtype
        )


# --------------------------------------------------------------------------------------------------- stride decimation


class StrideDecimation(Transform):
    """Keep every ``k``-th voxel, ``x[::k]`` along the chosen spatial axes (ArRFR's LR generation, ``x[::k, ::k]``).

    ArRFR (Yang, 2025) downsamples both inputs by ``k in {1, 2, 3, 4}`` this way. The output keeps voxel 0, so its
    affine has spacing ``x k`` along decimated axes and **the same first voxel centre** as the input. This grid is
    *not* the FOV-preserving grid of the other degradations: the sampled voxel centres span only ``(M - 1) k`` HR
    voxels, i.e. (when ``k`` divides ``N``) the covered extent shrinks by ``k - 1`` HR voxels at the far edge, and the
    LR FOV (centres +- half an LR voxel) is the HR FOV shifted by ``(k - 1) / 2`` HR voxels towards voxel 0.
    Output size ``M = ceil(N / k)``; the recorded scale is the spacing ratio ``k``.

    Args:
        k: positive integer stride, one or one per entry of ``spatial_axes``.
        spatial_axes: spatial axes to decimate (default all).
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, k: int | Sequence[int], spatial_axes: int | Sequence[int] | None = None) -> None:
        ks = (k,) if np.ndim(k) == 0 else tuple(k)  # type: ignore[arg-type]
        if not all(float(v) == int(v) and int(v) >= 1 for v in ks):
            raise ValueError(f"StrideDecimation: k must be a positive integer stride, got {k}.")
        self.k = k
        self.spatial_axes = spatial_axes

    def _strides(self, nd: int) -> tuple[int, ...]:
        axes = _spatial_axes(self.spatial_axes, nd, "StrideDecimation")
        ks = ensure_tuple_rep(int(self.k) if np.ndim(self.k) == 0 else tuple(int(v) for v in self.k), len(axes))
        strides = [1] * nd
        for a, k in zip(axes, ks):
            strides[a] = int(k)
        return tuple(strides)

    def output_geometry(self, spatial_shape: Sequence[int], affine) -> tuple[tuple[int, ...], np.ndarray]:
        """Decimated shape and affine (spacing x k, first voxel centre unchanged)."""
        strides = self._strides(len(spatial_shape))
        a = as_affine(affine)
        r = a.shape[0] - 1
        out = a.copy()
        for ax, k in enumerate(strides):
            out[:r, ax] = a[:r, ax] * k
        return tuple(-(-n // k) for n, k in zip(spatial_shape, strides)), out

    def __call__(self, img, affine=None) -> torch.Tensor:
        t, a = prepare_image(img, affine)
        spatial = tuple(t.shape[1:])
        strides = self._strides(len(spatial))
        _, out_affine = self.output_geometry(spatial, a)
        data = t.as_tensor() if hasattr(t, "as_tensor") else t
        out = data[(slice(None),) + tuple(slice(None, None, k) for k in strides)].to(torch.float32).contiguous()
        return wrap_output(t, out, out_affine, [float(k) for k in strides], _describe("decimate", strides))


class StrideDecimationd(MapTransform):
    """Dictionary-based :class:`StrideDecimation`."""

    backend = StrideDecimation.backend

    def __init__(
        self,
        keys: KeysCollection,
        k: int | Sequence[int],
        spatial_axes: int | Sequence[int] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.decimate = StrideDecimation(k, spatial_axes)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.decimate(d[key])
        return d


# ---------------------------------------------------------------------------------------- noise at a requested SNR


def _plain(x) -> torch.Tensor:
    x = x.as_tensor() if hasattr(x, "as_tensor") else x
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach()


def _spatial_like(x, data: torch.Tensor, what: str) -> torch.Tensor:
    """``x`` (a label or mask, with or without channel axes) as a spatial array matching ``data`` ``(C, *spatial)``."""
    t = _plain(x)
    while t.ndim > data.ndim - 1 and t.shape[0] == 1:
        t = t[0]
    if tuple(t.shape) != tuple(data.shape[1:]):
        raise ValueError(f"white_matter_reference: the {what} has shape {tuple(t.shape)}, the image "
                         f"{tuple(data.shape[1:])}.")
    return t.to(data.device)


def white_matter_reference(image, mask=None, label=None, wm_label: int = 3, quantile: float = 0.8) -> float:
    """The signal level an SNR refers to: the mean of ``image`` over the white matter.

    With ``label`` (a tissue label map, white matter = ``wm_label``; the realistic and phantom data use 3): the mean
    over those voxels (all channels). Otherwise a robust estimate for a T1w brain: the ``quantile`` of the voxels in
    ``mask`` (or above 10 % of the maximum); white matter is the brightest and largest class of a T1w brain (about
    40 % of it), so its 80th percentile lies inside the white matter. For other contrasts pass a label map.
    """
    data = _plain(image).float()
    if data.ndim < 2:
        raise ValueError(f"white_matter_reference: expected a channel-first image, got shape {tuple(data.shape)}.")
    if label is not None:
        sel = _spatial_like(label, data, "label") == wm_label
        if not sel.any():
            raise ValueError(f"white_matter_reference: the label map holds no white matter (label {wm_label}).")
        return float(data[:, sel].mean())
    flat = data.reshape(-1)
    if mask is not None:
        flat = flat[(_spatial_like(mask, data, "mask") > 0)[None].expand_as(data).reshape(-1)]
    else:
        flat = flat[flat > 0.1 * float(flat.max())]
    if flat.numel() == 0:
        raise ValueError("white_matter_reference: no foreground voxels.")
    return float(torch.quantile(flat[:: max(1, flat.numel() // 1_000_000)], quantile))


def _as_snr_range(snr) -> tuple[float, float] | None:
    if snr is None:
        return None
    lo, hi = (float(snr), float(snr)) if np.ndim(snr) == 0 else (float(snr[0]), float(snr[1]))
    if not (0 < lo <= hi and np.isfinite(hi)):
        raise ValueError(f"snr must be a positive number or a range 0 < low <= high, got {snr}.")
    return lo, hi


def _record_noise(out, sigma: float | None, snr: float | None, reference: float | None):
    if isinstance(out, MetaTensor):
        out.meta[NOISE_SIGMA_KEY] = 0.0 if sigma is None else float(sigma)
        out.meta[SNR_KEY] = float("inf") if snr is None else float(snr)
        out.meta[NOISE_REFERENCE_KEY] = float("nan") if reference is None else float(reference)
    return out


def _store_noise(d: dict, key, last: Mapping) -> None:
    sigma, snr, ref = last.get("sigma"), last.get("snr"), last.get("reference")
    d[f"{key}_{NOISE_SIGMA_KEY}"] = torch.tensor(0.0 if sigma is None else sigma, dtype=torch.float32)
    d[f"{key}_{SNR_KEY}"] = torch.tensor(float("inf") if snr is None else snr, dtype=torch.float32)
    d[f"{key}_{NOISE_REFERENCE_KEY}"] = torch.tensor(float("nan") if ref is None else ref, dtype=torch.float32)


class RandRicianNoiseSNR(Randomizable, Transform):
    """Rician noise at a requested SNR: ``|x + n1 + i n2|``, ``n1, n2 ~ N(0, sigma)``, ``sigma = reference / SNR``.

    ``reference`` is the white-matter mean of the image (:func:`white_matter_reference`: from a label map, else a
    robust brain percentile), so the SNR is the one an MR physicist measures in white matter. The SNR is drawn per call
    uniformly in ``log`` (or linearly, ``log_uniform=False``) from ``snr_range`` (default 10-40, the range of clinical
    3T structural scans), or fixed with ``snr=20``.

    Call ``t(img, reference=None, mask=None, label=None, snr=None)``; the result is a MetaTensor (the input's
    metadata plus :data:`~monai_inr.transforms.utils.NOISE_SIGMA_KEY`, :data:`SNR_KEY` and
    :data:`NOISE_REFERENCE_KEY`); ``self.last`` holds the same numbers. Inputs are not modified. The noise draw uses
    ``self.R`` (``set_random_state`` makes it deterministic).

    ``complex_input``: the channels are (real, imaginary) pairs of a complex image; complex Gaussian noise of standard
    deviation ``sigma`` per component is added and the result stays complex (its magnitude is Rician), the white
    matter reference measured on the magnitude.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, snr_range: float | Sequence[float] = (10.0, 40.0), prob: float = 1.0, log_uniform: bool = True,
                 wm_label: int = 3, quantile: float = 0.8, complex_input: bool = False) -> None:
        self.snr_range = _as_snr_range(snr_range)
        self.complex_input = bool(complex_input)
        if not 0.0 <= float(prob) <= 1.0:
            raise ValueError(f"RandRicianNoiseSNR: prob must be in [0, 1], got {prob}.")
        self.prob = float(prob)
        self.log_uniform = bool(log_uniform)
        self.wm_label = int(wm_label)
        self.quantile = float(quantile)
        self.last: dict = {}
        self._snr: float | None = None

    def randomize(self, data=None) -> None:
        self._snr = None
        if self.snr_range is None or self.R.rand() >= self.prob:
            return
        lo, hi = self.snr_range
        u = self.R.uniform(0.0, 1.0)
        self._snr = float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))) if self.log_uniform \
            else float(lo + u * (hi - lo))

    def __call__(self, img, reference: float | None = None, mask=None, label=None, snr: float | None = None,
                 randomize: bool = True):
        t, a = prepare_image(img, None)
        if randomize:
            self.randomize()
        snr = self._snr if snr is None else float(snr)
        data = (t.as_tensor() if hasattr(t, "as_tensor") else t).float()
        if snr is None:
            self.last = {"snr": None, "sigma": None, "reference": reference}
            return _record_noise(wrap_output(t, data.clone(), a), None, None, reference)
        if self.complex_input and data.shape[0] % 2:
            raise ValueError(f"RandRicianNoiseSNR: complex_input needs (real, imag) channel pairs, got {data.shape[0]}.")
        magnitude = torch.sqrt(data[0::2] ** 2 + data[1::2] ** 2) if self.complex_input else data
        ref = float(reference) if reference is not None else white_matter_reference(
            magnitude, mask, label, self.wm_label, self.quantile)
        sigma = max(ref, 1e-12) / snr
        if self.complex_input:  # complex Gaussian noise on the complex image; its magnitude is Rician
            g = torch.from_numpy(self.R.standard_normal(tuple(data.shape)).astype(np.float32)).to(data.device)
            out = data + sigma * g
        else:
            g = torch.from_numpy(self.R.standard_normal((2, *data.shape)).astype(np.float32)).to(data.device)
            out = torch.sqrt((data + sigma * g[0]) ** 2 + (sigma * g[1]) ** 2)
        self.last = {"snr": snr, "sigma": sigma, "reference": ref}
        return _record_noise(wrap_output(t, out, a, description=f"rician_snr({snr:.3g})"), sigma, snr, ref)


class RandRicianNoiseSNRd(Randomizable, MapTransform):
    """Dictionary-based :class:`RandRicianNoiseSNR`; one SNR draw per item (shared by the keys), independent noise.

    The white-matter reference of each key comes from ``d[reference_key]`` when given, else from ``d[label_key]``
    (white matter = ``wm_label``), else from a robust percentile inside ``d[mask_key]``. Writes
    ``d[f"{key}_noise_sigma"]``, ``d[f"{key}_snr"]`` and ``d[f"{key}_noise_reference"]`` (suffixes from
    :mod:`monai_inr.transforms.utils`).
    """

    backend = RandRicianNoiseSNR.backend

    def __init__(self, keys: KeysCollection, snr_range: float | Sequence[float] = (10.0, 40.0), prob: float = 1.0,
                 log_uniform: bool = True, label_key: str | None = None, mask_key: str | None = None,
                 reference_key: str | None = None, wm_label: int = 3, quantile: float = 0.8,
                 complex_input: bool = False, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.noise = RandRicianNoiseSNR(snr_range, prob, log_uniform, wm_label, quantile, complex_input)
        self.label_key, self.mask_key, self.reference_key = label_key, mask_key, reference_key

    def set_random_state(self, seed=None, state=None):
        super().set_random_state(seed, state)
        self.noise.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:
        self.noise.randomize()

    def __call__(self, data):
        d = dict(data)
        self.randomize()
        for key in self.key_iterator(d):
            ref = _item_reference(d, self.reference_key)
            d[key] = self.noise(d[key], reference=ref, mask=d.get(self.mask_key) if self.mask_key else None,
                                label=d.get(self.label_key) if self.label_key else None, randomize=False)
            _store_noise(d, key, self.noise.last)
        return d


def _item_reference(d: Mapping, reference_key: str | None) -> float | None:
    if reference_key is None or reference_key not in d:
        return None
    v = d[reference_key]
    if isinstance(v, torch.Tensor):
        return float(v.detach().cpu().reshape(-1)[0])
    return float(np.asarray(v).reshape(-1)[0])


# ------------------------------------------------------------------------------------------ physical acquisition


def _smooth_phase(rng: np.random.RandomState, shape: Sequence[int], amplitude: float, n_basis: int = 3) -> np.ndarray:
    """A smooth random phase map (radians): a random global phase plus a low-order cosine field of RMS ``amplitude``
    over the FOV (B0 / coil phase of a real acquisition)."""
    nd = len(shape)
    coef = rng.standard_normal((n_basis,) * nd)
    coef.flat[0] = 0.0
    bases = [np.cos(np.pi * ((np.arange(n) + 0.5) / n)[:, None] * np.arange(n_basis)[None, :]) for n in shape]
    field = coef
    for axis in range(nd):  # contract the leading coefficient axis, append the spatial axis: separable evaluation
        field = np.tensordot(field, bases[axis].astype(np.float32 if axis == nd - 1 else np.float64), axes=([0], [1]))
    rms = float(np.sqrt((field**2).mean())) or 1.0
    return (rng.uniform(-np.pi, np.pi) + amplitude * field / rms).astype(np.float32)


class RandSmoothPhase(Randomizable, Transform):
    """A magnitude image made complex with a smooth random phase: the complex image an MR acquisition records.

    A reconstructed MR image is complex; its phase varies smoothly over the field of view (B0 off-resonance, coil and
    receiver phase). Dual-ArbNet (Zhang et al., MICCAI 2023) trains and tests on complex data, so its k-space
    truncation acts on ``m(x) exp(i phi(x))``, not on the magnitude ``m``. ``phi`` is a random global phase plus a
    low-order cosine field of RMS ``amplitude`` radians (the field of :class:`PhysicalAcquisition`'s
    ``random_phase``), drawn per call. Output: ``2C`` channels, (real, imaginary) per input channel
    (``re_0, im_0, re_1, im_1, ...``, the convention of :class:`KSpaceCrop`'s ``complex_input``), float32, the input's
    metadata and affine kept. The magnitude of the output is the input.

    Args:
        amplitude: RMS of the spatially varying phase (radians) over the image.
        n_basis: cosine terms per axis (3: up to one cycle across the field of view).
        seed: seed of the draws (``None``: the default stream, or ``set_random_state`` later).
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, amplitude: float = 1.0, n_basis: int = 3, seed: int | None = None) -> None:
        if not (np.isfinite(amplitude) and amplitude >= 0):
            raise ValueError(f"RandSmoothPhase: amplitude must be a finite number >= 0 (radians), got {amplitude}.")
        if int(n_basis) < 1:
            raise ValueError(f"RandSmoothPhase: n_basis must be >= 1, got {n_basis}.")
        self.amplitude, self.n_basis = float(amplitude), int(n_basis)
        self._seed = 0
        if seed is not None:
            self.set_random_state(seed)

    def randomize(self, data=None) -> None:
        self._seed = int(self.R.randint(0, 2**31 - 1))

    def __call__(self, img, randomize: bool = True):
        t, a = prepare_image(img, None)
        if randomize:
            self.randomize()
        data = (t.as_tensor() if hasattr(t, "as_tensor") else t).float()
        phase = torch.from_numpy(_smooth_phase(np.random.RandomState(self._seed), tuple(data.shape[1:]),
                                               self.amplitude, self.n_basis)).to(data.device)
        out = torch.stack([data * torch.cos(phase), data * torch.sin(phase)], dim=1).reshape(-1, *data.shape[1:])
        return wrap_output(t, out.contiguous(), a, description="smooth_phase")


class RandSmoothPhased(Randomizable, MapTransform):
    """Dictionary-based :class:`RandSmoothPhase`: an independent phase for every key (each contrast of a scan has its
    own phase)."""

    backend = RandSmoothPhase.backend

    def __init__(self, keys: KeysCollection, amplitude: float = 1.0, n_basis: int = 3, seed: int | None = None,
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.phase = RandSmoothPhase(amplitude, n_basis)
        if seed is not None:
            self.set_random_state(seed)

    def set_random_state(self, seed=None, state=None):
        super().set_random_state(seed, state)
        self.phase.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:
        self.phase.randomize()

    def __call__(self, data):
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.phase(d[key])
        return d


def _profile_along(z: torch.Tensor, axis: int, n_out: int, profile: str, thickness: float | None) -> torch.Tensor:
    """Slice-profile integration of a (complex) tensor ``(C, *spatial)`` along spatial ``axis`` into ``n_out``."""
    n_in = z.shape[1 + axis]
    mat = torch.from_numpy(Fn.slice_profile_matrix(n_in, int(n_out), profile, thickness)).to(z.device)
    mat = mat.to(z.dtype if z.is_complex() else torch.float64)
    moved = torch.movedim(z, 1 + axis, -1)
    return torch.movedim(moved @ mat.T.to(moved.dtype), -1, 1 + axis)


class PhysicalAcquisition(Randomizable, Transform):
    """A physical MR acquisition of an HR image onto the LR grid of ``scale`` (complex signal, magnitude output).

    Steps, in the order a scanner applies them:

    1. optional smooth random phase (``random_phase`` radians RMS plus a random global phase): the object's complex
       signal;
    2. through-plane slice profile along ``slice_axis`` (2D multi-slice acquisition; ``"box"`` or ``"gaussian"``,
       FWHM = slice thickness = slice spacing ``x (1 - slice_gap)``), onto ``round(N / s)`` cell-centred slices;
    3. in-plane k-space truncation of the complex signal on the other axes (every axis for a 3D acquisition,
       ``slice_axis=None``): the central ``round(N / s)`` samples, amplitude-corrected
       (:func:`~monai_inr.transforms.functional.kspace_crop`, cell-centred alignment);
    4. complex Gaussian noise, ``sigma = reference / SNR`` per channel (reference = white-matter mean,
       :func:`white_matter_reference`, measured on the HR input unless given; the SNR fixed or drawn in ``snr``);
    5. magnitude (Rician statistics).

    The output grid covers the HR field of view (:func:`monai_inr.coords.fov_affine`), like the other degradations:
    shape ``round(N / s)``, affine and :data:`DEGRADATION_SCALE_KEY` updated, the noise sigma / SNR / reference
    recorded in the metadata (and in ``self.last``). Accepts a MetaTensor, or a torch tensor / numpy array with an
    optional ``affine``; per-call ``scale`` (one number or one per axis) overrides the default, so it can run inside
    a training sampler on an HR patch.

    Args:
        scale: downsampling factor(s) ``N_hr / N_lr >= 1``.
        slice_axis: spatial axis of a 2D multi-slice acquisition (``None``: 3D acquisition, k-space on every axis).
        profile: slice profile, ``"box"`` or ``"gaussian"``.
        slice_gap: gap between slices as a fraction of the slice spacing, ``[0, 1)``.
        snr: ``None`` (no noise), a number, or a ``(low, high)`` range drawn log-uniformly per call.
        random_phase: RMS of the smooth random phase in radians (``0``/``False``: real signal, ``True``: pi / 2).
        wm_label, quantile: white-matter reference options (:func:`white_matter_reference`).
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        scale: float | Sequence[float] | None = None,
        slice_axis: int | None = None,
        profile: Literal["box", "gaussian"] = "box",
        slice_gap: float = 0.0,
        snr: float | Sequence[float] | None = 20.0,
        random_phase: float | bool = False,
        wm_label: int = 3,
        quantile: float = 0.8,
    ) -> None:
        if scale is not None:
            validate_downsampling_scale(scale)
        if profile not in ("box", "gaussian"):
            raise ValueError(f"PhysicalAcquisition: profile must be 'box' or 'gaussian', got {profile!r}.")
        if not (np.isfinite(slice_gap) and 0.0 <= float(slice_gap) < 1.0):
            raise ValueError(f"PhysicalAcquisition: slice_gap must be in [0, 1), got {slice_gap}.")
        self.scale = scale
        self.slice_axis = slice_axis
        self.profile = profile
        self.slice_gap = float(slice_gap)
        self.snr_range = _as_snr_range(snr)
        amp = (math.pi / 2 if random_phase else 0.0) if isinstance(random_phase, bool) else float(random_phase)
        if not (np.isfinite(amp) and amp >= 0):
            raise ValueError(f"PhysicalAcquisition: random_phase must be a non-negative angle, got {random_phase}.")
        self.random_phase = amp
        self.wm_label = int(wm_label)
        self.quantile = float(quantile)
        self.last: dict = {}
        self._snr: float | None = None
        self._phase_seed: int | None = None

    def output_geometry(self, spatial_shape: Sequence[int], affine, scale: float | Sequence[float] | None = None
                        ) -> tuple[tuple[int, ...], np.ndarray]:
        """LR shape and affine for an HR grid of ``spatial_shape`` with ``affine``."""
        s = validate_downsampling_scale(_pick_scale(scale, self.scale, "PhysicalAcquisition"), len(spatial_shape))
        shape = coords.scaled_shape(spatial_shape, [1.0 / v for v in s])
        return shape, grid_affine(affine, spatial_shape, shape)

    def randomize(self, data=None) -> None:
        self._snr = None
        if self.snr_range is not None:
            lo, hi = self.snr_range
            self._snr = float(math.exp(self.R.uniform(math.log(lo), math.log(hi)))) if hi > lo else lo
        self._phase_seed = int(self.R.randint(0, 2**31 - 1)) if self.random_phase > 0 else None

    def __call__(self, img, affine=None, scale: float | Sequence[float] | None = None, reference: float | None = None,
                 mask=None, label=None, randomize: bool = True) -> torch.Tensor:
        t, a = prepare_image(img, affine)
        data = (t.as_tensor() if hasattr(t, "as_tensor") else t).float()
        spatial = tuple(int(n) for n in data.shape[1:])
        shape, out_affine = self.output_geometry(spatial, a, scale)
        if randomize:
            self.randomize()
        nd = len(spatial)
        axis = None
        if self.slice_axis is not None:
            (axis,) = _spatial_axes(self.slice_axis, nd, "PhysicalAcquisition")
        ref = None
        if self._snr is not None:
            ref = float(reference) if reference is not None else white_matter_reference(
                data, mask, label, self.wm_label, self.quantile)
        z = data
        if self._phase_seed is not None:
            phase = _smooth_phase(np.random.RandomState(self._phase_seed), spatial, self.random_phase)
            z = z * torch.polar(torch.ones_like(z), torch.from_numpy(phase).to(z.device)[None])
        if axis is not None and shape[axis] != spatial[axis]:
            thickness = spatial[axis] / shape[axis] * (1.0 - self.slice_gap)
            z = _profile_along(z, axis, shape[axis], self.profile, thickness)
        kdims = [1 + d for d in range(nd) if d != axis and shape[d] != spatial[d]]
        if kdims:
            z = Fn.kspace_crop(z, [shape[d - 1] for d in kdims], kdims, align="cell", amplitude_correction=True)
        sigma = None
        if self._snr is not None:
            sigma = max(ref, 1e-12) / self._snr
            g = torch.from_numpy(self.R.standard_normal((2, *z.shape)).astype(np.float32)).to(z.device)
            if z.is_complex():
                z = z + torch.complex(g[0], g[1]) * sigma
            else:
                z = torch.complex(z + g[0] * sigma, g[1] * sigma)
        out = z.abs().to(torch.float32).contiguous()
        f = downsampling_factors(spatial, shape)
        kind = "3d"
        if axis is not None:
            kind = f"2d_{self.profile}(axis={axis}" + (f",gap={self.slice_gap:g})" if self.slice_gap else ")")
        desc = _describe(f"physical_{kind}", f) + (f"+snr({self._snr:.3g})" if sigma is not None else "")
        self.last = {"snr": self._snr if sigma is not None else None, "sigma": sigma, "reference": ref,
                     "slice_axis": axis, "profile": self.profile, "slice_gap": self.slice_gap, "factors": f,
                     "random_phase": self.random_phase}
        return _record_noise(wrap_output(t, out, out_affine, f, desc), sigma, self.last["snr"], ref)


class PhysicalAcquisitiond(Randomizable, MapTransform):
    """Dictionary-based :class:`PhysicalAcquisition` (one draw per item, shared by the keys; independent noise).

    ``scale_key`` reads the per-item factor (as :class:`CubicDownsampled`); the white-matter reference of each key
    comes from ``d[reference_key]``, else ``d[label_key]`` (white matter = ``wm_label``, on the HR grid), else a
    robust percentile inside ``d[mask_key]``. Writes ``d[f"{key}_noise_sigma"]``, ``d[f"{key}_snr"]`` and
    ``d[f"{key}_noise_reference"]``. Label and mask keys are not transformed (degrade them with
    :class:`CubicDownsampled` ``order=0`` when an LR label is needed).
    """

    backend = PhysicalAcquisition.backend

    def __init__(
        self,
        keys: KeysCollection,
        scale: float | Sequence[float] | None = None,
        slice_axis: int | None = None,
        profile: Literal["box", "gaussian"] = "box",
        slice_gap: float = 0.0,
        snr: float | Sequence[float] | None = 20.0,
        random_phase: float | bool = False,
        scale_key: str | None = None,
        label_key: str | None = None,
        mask_key: str | None = None,
        reference_key: str | None = None,
        wm_label: int = 3,
        quantile: float = 0.8,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if scale is None and scale_key is None:
            raise ValueError("PhysicalAcquisitiond: give a scale, or a scale_key naming the per-item scale.")
        self.acquire = PhysicalAcquisition(scale, slice_axis, profile, slice_gap, snr, random_phase, wm_label, quantile)
        self.scale_key, self.label_key = scale_key, label_key
        self.mask_key, self.reference_key = mask_key, reference_key

    def set_random_state(self, seed=None, state=None):
        super().set_random_state(seed, state)
        self.acquire.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:
        self.acquire.randomize()

    def __call__(self, data):
        d = dict(data)
        scale = _item_scale(d, self.scale_key)
        self.randomize()
        for key in self.key_iterator(d):
            d[key] = self.acquire(d[key], scale=scale, reference=_item_reference(d, self.reference_key),
                                  mask=d.get(self.mask_key) if self.mask_key else None,
                                  label=d.get(self.label_key) if self.label_key else None, randomize=False)
            _store_noise(d, key, self.acquire.last)
        return d
