"""Array-level operators behind the transforms: cell-centred resampling, centred k-space cropping, slice profiles.

Every operator here follows the project's geometry convention (stated once in :mod:`monai_inr.coords`): an output grid
of ``M`` voxels covers the same field of view (FOV) as the ``N`` input voxels, and output voxel ``m`` sits at the
continuous input index ``(m + 0.5) * N / M - 0.5`` (cell-centred, ``align_corners=False``). The matching affine is
:func:`monai_inr.coords.fov_affine`.

These functions work on plain arrays and know nothing about metadata (only :func:`resample_to_grid` takes the two
grids' affines, mapped through :func:`monai_inr.coords.voxel_map`); the transforms in
:mod:`monai_inr.transforms.degradation` and :mod:`monai_inr.transforms.sampling` add the rest.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
import torch
from scipy import ndimage
from scipy.special import erf

from monai_inr.coords import voxel_map

__all__ = [
    "resize_cell_centred",
    "resample_to_grid",
    "anti_alias_sigma",
    "centred_fft",
    "centred_ifft",
    "kspace_crop_slice",
    "kspace_alignment_shift",
    "kspace_crop",
    "bandlimited_sampling_matrix",
    "bandlimited_sample",
    "complex_from_channels",
    "complex_to_channels",
    "slice_centres",
    "slice_profile_matrix",
    "apply_along_axis",
    "thick_slice",
]

ArrayLike = np.ndarray | torch.Tensor
SliceProfile = Literal["box", "gaussian"]

#: FWHM of a Gaussian in units of its standard deviation.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _to_numpy(array: ArrayLike) -> tuple[np.ndarray, torch.Tensor | None]:
    """``(numpy view, the torch tensor it came from or None)``; MetaTensors are reduced to plain data."""
    if isinstance(array, torch.Tensor):
        t = array.as_tensor() if hasattr(array, "as_tensor") else array
        return t.detach().cpu().numpy(), t
    return np.asarray(array), None


def _like(out: np.ndarray, ref: torch.Tensor | None) -> ArrayLike:
    return torch.from_numpy(np.ascontiguousarray(out)).to(ref.device) if ref is not None else out


def anti_alias_sigma(factor: float | Sequence[float]) -> tuple[float, ...]:
    """Gaussian prefilter width (input voxels) for downsampling by ``factor`` = N_in / N_out per axis.

    ``sigma = max(0, (factor - 1) / 2)``, the rule of ``skimage.transform.resize(anti_aliasing=True)``; 0 means no
    smoothing (upsampling or unchanged axes).
    """
    f = np.atleast_1d(np.asarray(factor, dtype=np.float64))
    return tuple(float(max(0.0, (v - 1.0) / 2.0)) for v in f)


def resize_cell_centred(
    array: ArrayLike,
    out_shape: Sequence[int],
    order: int = 3,
    mode: str = "reflect",
    anti_alias: bool = False,
) -> ArrayLike:
    """Spline-resample a volume onto ``out_shape`` voxels covering the same FOV (cell-centred alignment).

    ``scipy.ndimage.zoom(..., grid_mode=True)`` per channel: output voxel ``m`` samples the spline interpolant of the
    input at index ``(m + 0.5) * N / M - 0.5``, so the outer FOV edges (and the FOV centre) of input and output
    coincide, consistent with :func:`monai_inr.coords.fov_affine`. The default boundary ``mode="reflect"`` is scipy's
    half-sample symmetric extension (``d c b a | a b c d``): for ``order <= 1`` it equals edge clamping, i.e.
    ``torch.nn.functional.interpolate(mode="(tri|bi)linear", align_corners=False)`` and ``grid_sample`` with
    ``padding_mode="border"``, and for splines it is the matching symmetric boundary for the prefilter.

    This is the one resampler of the project: cubic downsampling (ArSSR, order 3, no anti-aliasing), and the cubic
    (order 3) and trilinear (order 1) baselines of the evaluation protocol.

    Args:
        array: ``(C, *spatial)`` or ``(*spatial)`` (numpy or torch); ``len(out_shape)`` tells which.
        out_shape: spatial output shape.
        order: spline order 0-5 (0 nearest, 1 linear, 3 cubic B-spline with prefilter).
        mode: scipy boundary mode; ``"reflect"`` (default) or ``"nearest"``/``"mirror"``/``"grid-constant"``...
        anti_alias: Gaussian prefilter with ``sigma = (N/M - 1) / 2`` input voxels on downsampled axes
            (:func:`anti_alias_sigma`). ArSSR does not use one (``False``).

    Returns:
        float32 (complex64 for complex input) array of shape ``(C, *out_shape)`` or ``out_shape``, numpy for numpy
        input and a plain ``torch.Tensor`` on the input's device for torch input (metadata is not carried: the
        transforms set the new affine themselves).
    """
    arr, ref = _to_numpy(array)
    out_shape = tuple(int(n) for n in out_shape)
    nd = len(out_shape)
    if arr.ndim == nd:
        channels, squeeze = arr[None], True
    elif arr.ndim == nd + 1:
        channels, squeeze = arr, False
    else:
        raise ValueError(
            f"resize_cell_centred: array of shape {tuple(arr.shape)} does not match a {nd}D out_shape {out_shape}; "
            f"expected (C, *spatial) or (*spatial)."
        )
    if any(n < 1 for n in out_shape):
        raise ValueError(f"resize_cell_centred: out_shape must be positive on every axis, got {out_shape}.")
    in_shape = channels.shape[1:]
    if any(n < 1 for n in in_shape):
        raise ValueError(f"resize_cell_centred: the input has an empty axis, shape {tuple(arr.shape)}.")
    dtype = np.complex64 if np.iscomplexobj(channels) else np.float32
    work = np.complex128 if dtype == np.complex64 else np.float64
    zoom = [o / i for o, i in zip(out_shape, in_shape)]
    sigma = anti_alias_sigma([i / o for i, o in zip(in_shape, out_shape)]) if anti_alias else (0.0,) * nd
    out = np.empty((channels.shape[0], *out_shape), dtype=dtype)
    for c in range(channels.shape[0]):
        x = channels[c].astype(work, copy=False)
        if any(s > 0 for s in sigma):
            x = ndimage.gaussian_filter(x, sigma=sigma, mode=mode)
        if tuple(in_shape) == out_shape:
            y = x  # identity: every output centre is an input centre and splines interpolate
        else:
            y = ndimage.zoom(x, zoom, order=order, mode=mode, grid_mode=True, prefilter=order > 1)
        if y.shape != out_shape:  # cannot happen with zoom = out/in, kept as a guard against scipy changes
            raise RuntimeError(f"resize_cell_centred: scipy returned {y.shape}, expected {out_shape}.")
        out[c] = y
    return _like(out[0] if squeeze else out, ref)


# ---------------------------------------------------------------------------------------------------------- k-space


def centred_fft(x: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Unitary centred FFT along ``dims``: ``fftshift(fftn(ifftshift(x), norm="ortho"))``; DC at index ``N // 2``."""
    dims = tuple(dims)
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims, norm="ortho"), dim=dims)


def centred_ifft(k: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`centred_fft`."""
    dims = tuple(dims)
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(k, dim=dims), dim=dims, norm="ortho"), dim=dims)


def kspace_crop_slice(n: int, m: int) -> slice:
    """Indices of the centred spectrum (length ``n``, DC at ``n // 2``) kept for ``m`` output samples.

    Crop rule: keep ``[n//2 - m//2, n//2 - m//2 + m)``, so the DC sample lands at ``m // 2`` of the cropped centred
    spectrum (frequencies ``-(m//2) .. m - 1 - m//2``). Requires ``1 <= m <= n``.
    """
    if not 1 <= m <= n:
        raise ValueError(f"k-space crop: cannot keep {m} of {n} samples (need 1 <= kept <= size).")
    start = n // 2 - m // 2
    return slice(start, start + m)


def kspace_alignment_shift(n: int, m: int) -> float:
    """Offset (fraction of the FOV) of a plain centred-k-space-cropped grid from the cell-centred grid.

    With centred FFTs the sample ``m // 2`` of the ``m``-grid and the sample ``n // 2`` of the ``n``-grid are the
    same point, so the cropped image's voxel ``j`` sits at FOV fraction ``(j + 0.5) / m - eps`` with
    ``eps = (m//2 + 0.5) / m - (n//2 + 0.5) / n``: zero when ``n`` and ``m`` are both odd, ``1/(2m) - 1/(2n)`` (half
    an LR voxel minus half an HR voxel) when both are even.
    """
    return (m // 2 + 0.5) / m - (n // 2 + 0.5) / n


def kspace_crop(
    x: torch.Tensor,
    out_sizes: Sequence[int],
    dims: Sequence[int],
    align: Literal["cell", "dft"] = "cell",
    amplitude_correction: bool = True,
) -> torch.Tensor:
    """Low-resolution image by keeping the central block of the unitary centred spectrum (Dual-ArbNet).

    ``x`` (real or complex) is transformed with :func:`centred_fft` along ``dims``, the central ``out_sizes`` samples
    are kept (:func:`kspace_crop_slice`) and transformed back with the smaller unitary inverse FFT.

    * ``amplitude_correction``: a unitary crop scales intensities by ``sqrt(N / M)`` per axis (the kept coefficients
      are re-normalised by the smaller ``1 / sqrt(M)``); multiplying by ``sqrt(M / N)`` (i.e. dividing by
      ``sqrt(s1 s2 ...)``, as the Dual-ArbNet code does) keeps the mean intensity (the DC value) exactly.
    * ``align="cell"`` multiplies the kept spectrum by the linear phase ``exp(2 pi i f eps)``
      (:func:`kspace_alignment_shift`), a sub-voxel shift that puts the samples exactly on the cell-centred grid of
      :func:`monai_inr.coords.fov_affine` (FOV centre kept) for every parity of ``N`` and ``M``. A signal band-limited
      to ``|f| < M / 2`` cycles per FOV is then reproduced exactly at the LR voxel centres.
      ``align="dft"`` is the plain crop of the Dual-ArbNet code; its samples are offset by ``-eps`` FOV from the
      cell-centred grid (e.g. ``-(s - 1) / 2`` HR voxels when both sizes are even), which the transform records in the
      affine instead.

    Returns:
        complex tensor (complex128 for float64/complex128 input, else complex64).
    """
    dims = tuple(int(d) % x.ndim for d in dims)
    if len(out_sizes) != len(dims):
        raise ValueError(f"k-space crop: {len(out_sizes)} output sizes for {len(dims)} axes.")
    if align not in ("cell", "dft"):
        raise ValueError(f"k-space crop: align must be 'cell' or 'dft', got {align!r}.")
    cdtype = torch.complex128 if x.dtype in (torch.float64, torch.complex128) else torch.complex64
    k = centred_fft(x.to(cdtype), dims)
    gain = 1.0
    for d, m in zip(dims, out_sizes):
        n = k.shape[d]
        sl = kspace_crop_slice(n, int(m))
        k = k.narrow(d, sl.start, sl.stop - sl.start)
        eps = kspace_alignment_shift(n, int(m))
        if align == "cell" and eps != 0.0:
            f = torch.arange(int(m), dtype=torch.float64, device=k.device) - int(m) // 2
            phase = torch.polar(torch.ones_like(f), 2 * math.pi * f * eps).to(cdtype)
            shape = [1] * k.ndim
            shape[d] = int(m)
            k = k * phase.reshape(shape)
        gain *= int(m) / n
    y = centred_ifft(k, dims)
    return y * math.sqrt(gain) if amplitude_correction else y


def bandlimited_sampling_matrix(
    n: int, m: int, positions: Sequence[float] | np.ndarray, dtype: torch.dtype = torch.complex128
) -> torch.Tensor:
    """Matrix that samples the k-space truncation of an ``n``-sample signal at arbitrary positions.

    Keeping the central ``m`` frequencies of the centred spectrum (:func:`kspace_crop_slice`: ``-(m//2) .. m - 1 -
    m//2`` cycles per FOV) defines a band-limited continuous signal ``g(u) = sum_x D(u - x) x_x`` with the Dirichlet
    kernel ``D(t) = (1 / n) sum_f exp(2 pi i f t / n)``; ``u`` is a continuous voxel index (voxel ``j``'s centre at
    ``u = j``). Row ``i`` of the returned ``(len(positions), n)`` matrix is ``D(positions[i] - x)``.

    At the cell-centred LR positions ``u_j = (j + 0.5) n / m - 0.5`` this is exactly :func:`kspace_crop` with
    ``align="cell"`` and ``amplitude_correction`` (the whole-image truncation of Dual-ArbNet), so any window of that LR
    image can be computed without computing the rest, and at any sub-voxel offset: a patch of an LR image whose
    k-space was truncated over the whole FOV (no wrap-around ringing at the patch's edges).
    """
    if not 1 <= int(m) <= int(n):
        raise ValueError(f"band-limited sampling: cannot keep {m} of {n} frequencies (need 1 <= kept <= size).")
    u = torch.as_tensor(np.asarray(positions, dtype=np.float64))
    f = torch.arange(int(m), dtype=torch.float64) - int(m) // 2
    x = torch.arange(int(n), dtype=torch.float64)
    w = 2 * math.pi / int(n)
    synth = torch.polar(torch.ones(u.numel(), f.numel(), dtype=torch.float64), w * u.reshape(-1, 1) * f)
    analysis = torch.polar(torch.ones(f.numel(), x.numel(), dtype=torch.float64), -w * f.reshape(-1, 1) * x)
    return ((synth @ analysis) / int(n)).to(dtype)


def bandlimited_sample(
    x: torch.Tensor, bands: Sequence[int], positions: Sequence[Sequence[float] | np.ndarray], dims: Sequence[int]
) -> torch.Tensor:
    """Sample the k-space truncation of ``x`` (real or complex) along ``dims`` at per-axis ``positions``.

    Along each axis ``d`` of ``dims`` the central ``bands[i]`` frequencies of the whole axis are kept and the
    band-limited signal is evaluated at ``positions[i]`` (continuous voxel indices), with
    :func:`bandlimited_sampling_matrix` (separable, so the cost is that of a few small matrix products, not an FFT of
    the output grid). Returns a complex tensor (complex128 for float64/complex128 input, else complex64).
    """
    dims = tuple(int(d) % x.ndim for d in dims)
    if not len(bands) == len(positions) == len(dims):
        raise ValueError(f"band-limited sampling: {len(bands)} bands and {len(positions)} position lists for "
                         f"{len(dims)} axes.")
    cdtype = torch.complex128 if x.dtype in (torch.float64, torch.complex128) else torch.complex64
    y = x.to(cdtype)
    for d, m, pos in zip(dims, bands, positions):
        a = bandlimited_sampling_matrix(y.shape[d], int(m), pos, dtype=cdtype).to(y.device)
        y = torch.movedim(torch.tensordot(a, y, dims=([1], [d])), 0, d)
    return y


def complex_from_channels(data: torch.Tensor, complex_input: bool, what: str = "image") -> torch.Tensor:
    """Complex view of ``(C, ...)`` data: complex dtypes as they are; with ``complex_input`` the channels are
    ``(real, imaginary)`` pairs; otherwise real data (float64 kept, anything else float32)."""
    if data.is_complex():
        return data
    if complex_input:
        if data.shape[0] % 2:
            raise ValueError(f"{what}: complex_input needs (real, imag) channel pairs, got {data.shape[0]} channels.")
        z = torch.complex(data[0::2].double(), data[1::2].double())
        return z if data.dtype == torch.float64 else z.to(torch.complex64)
    return data if data.dtype == torch.float64 else data.float()


def complex_to_channels(y: torch.Tensor, output: str) -> torch.Tensor:
    """``(C, ...)`` complex data as ``"magnitude"`` (C channels), ``"real"`` (C channels, real part) or
    ``"complex"`` (2C channels, ``re_0, im_0, re_1, im_1, ...``)."""
    if output == "magnitude":
        return y.abs()
    if output == "real":
        return y.real
    if output == "complex":
        return torch.stack([y.real, y.imag], dim=1).reshape(-1, *y.shape[1:])
    raise ValueError(f"output must be 'magnitude', 'real' or 'complex', got {output!r}.")


# ------------------------------------------------------------------------------------------------------ thick slices


def slice_centres(n_in: int, n_out: int) -> np.ndarray:
    """Continuous input indices of the ``n_out`` cell-centred output voxel centres over ``n_in`` input voxels."""
    return (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5


def _reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Half-sample symmetric index folding (scipy ``mode="reflect"``: ``d c b a | a b c d | d c b a``)."""
    m = np.mod(idx, 2 * n)
    return np.where(m >= n, 2 * n - 1 - m, m)


def slice_profile_matrix(
    n_in: int, n_out: int, profile: SliceProfile = "box", thickness: float | None = None
) -> np.ndarray:
    """``(n_out, n_in)`` weights of a thick-slice acquisition along one axis (rows sum to 1).

    The input is modelled as piecewise constant (voxel ``n`` covers ``[n - 0.5, n + 0.5]``); output slice ``j`` is
    centred at :func:`slice_centres` and integrates the input against the slice profile:

    * ``"box"``: uniform over a width of ``thickness`` input voxels (exact partial-voxel overlaps), so for an integer
      ``thickness == n_in / n_out`` slice ``j`` is the mean of input voxels ``j*t .. j*t + t - 1``;
    * ``"gaussian"``: a Gaussian with FWHM ``thickness`` input voxels, integrated over each voxel (erf).

    ``thickness`` defaults to the slice spacing ``n_in / n_out`` (contiguous slices, no gap). Profile mass falling
    outside the FOV is folded back with the half-sample symmetric boundary, so constant images stay constant.
    """
    if n_out < 1 or n_in < 1:
        raise ValueError(f"slice profile: sizes must be positive, got n_in={n_in}, n_out={n_out}.")
    width = float(n_in / n_out if thickness is None else thickness)
    if not (np.isfinite(width) and width > 0):
        raise ValueError(f"slice profile: thickness must be positive and finite, got {thickness}.")
    c = slice_centres(n_in, n_out)[:, None]
    if profile == "box":
        half = width / 2.0
        pad = int(math.ceil(half)) + 1
    elif profile == "gaussian":
        sigma = width / FWHM_PER_SIGMA
        pad = int(math.ceil(5.0 * sigma)) + 1
    else:
        raise ValueError(f"slice profile must be 'box' or 'gaussian', got {profile!r}.")
    ext = np.arange(-pad, n_in + pad, dtype=np.float64)[None, :]
    lo, hi = ext - 0.5, ext + 0.5
    if profile == "box":
        w = np.clip(np.minimum(hi, c + half) - np.maximum(lo, c - half), 0.0, None) / width
    else:
        s = sigma * math.sqrt(2.0)
        w = 0.5 * (erf((hi - c) / s) - erf((lo - c) / s))
    out = np.zeros((n_out, n_in), dtype=np.float64)
    folded = _reflect_index(ext[0].astype(np.int64), n_in)
    for e, target in enumerate(folded):
        out[:, target] += w[:, e]
    return out / out.sum(axis=1, keepdims=True)


def apply_along_axis(matrix: np.ndarray, array: np.ndarray, axis: int) -> np.ndarray:
    """``out[..., j, ...] = sum_n matrix[j, n] * array[..., n, ...]`` along ``axis``."""
    moved = np.moveaxis(array, axis, -1)
    return np.moveaxis(moved @ matrix.T.astype(moved.dtype if np.iscomplexobj(moved) else np.float64), -1, axis)


def thick_slice(
    array: ArrayLike,
    axis: int,
    n_out: int,
    profile: Literal["box", "gaussian", "none"] = "box",
    thickness: float | None = None,
    order: int = 3,
) -> ArrayLike:
    """Thick-slice acquisition of ``array`` ``(C, *spatial)`` along spatial ``axis`` into ``n_out`` slices.

    ``profile="box"``/``"gaussian"`` apply :func:`slice_profile_matrix`; ``profile="none"`` samples the slice centres
    without a slice profile by spline interpolation of ``order`` (:func:`resize_cell_centred` along that axis only;
    McGinnis et al. resample with order 3 and no slice-profile blur). Returns float32, numpy or torch like the input.
    """
    arr, ref = _to_numpy(array)
    nd = arr.ndim - 1
    ax = int(axis) % nd if -nd <= int(axis) < nd else None
    if ax is None:
        raise ValueError(f"thick slice: axis {axis} is out of range for {nd} spatial dimensions.")
    n_in = arr.shape[1 + ax]
    if profile == "none":
        out_shape = list(arr.shape[1:])
        out_shape[ax] = int(n_out)
        out = resize_cell_centred(arr, out_shape, order=order)
    else:
        mat = slice_profile_matrix(n_in, int(n_out), profile, thickness)
        out = apply_along_axis(mat, arr.astype(np.float64, copy=False), 1 + ax).astype(np.float32)
    return _like(out, ref)


def resample_to_grid(
    image: np.ndarray,
    affine: np.ndarray,
    out_shape: Sequence[int],
    out_affine: np.ndarray,
    order: int = 3,
    mode: str = "reflect",
    chunk_size: int = 2**20,
) -> np.ndarray:
    """Spline-interpolate ``image`` (on ``affine``) at the voxel centres of another grid, through world coordinates.

    Cubic B-spline (``order=3``, with prefilter) by default, boundary ``mode="reflect"`` (half-sample symmetric), the
    same interpolant as :func:`monai_inr.transforms.resize_cell_centred` when both grids cover the same FOV. Used for
    the cubic-spline baseline of grids that differ from the input grid (the other contrast's, or the ground truth's).
    """
    img = np.asarray(image, dtype=np.float64)
    coeff = ndimage.spline_filter(img, order=order, mode=mode) if order > 1 else img
    m = voxel_map(out_affine, affine)  # out voxel -> in voxel
    n = int(np.prod(out_shape))
    out = np.empty(n, dtype=np.float32)
    for s in range(0, n, int(chunk_size)):
        flat = np.arange(s, min(n, s + int(chunk_size)), dtype=np.int64)
        ijk = np.stack(np.unravel_index(flat, tuple(out_shape)), axis=0).astype(np.float64)
        src = m[:3, :3] @ ijk + m[:3, 3:4]
        out[s : s + flat.size] = ndimage.map_coordinates(coeff, src, order=order, mode=mode, prefilter=False)
    return out.reshape(tuple(out_shape))
