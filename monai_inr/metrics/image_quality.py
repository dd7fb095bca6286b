"""Full-reference image quality: PSNR and SSIM with explicit data range and voxel-selection masks.

Protocol (:mod:`monai_inr.metrics.protocol`):

* inputs are normalised first (:func:`monai_inr.metrics.protocol.normalize_to_reference`), so ``data_range`` is 1;
* :func:`psnr` inside a mask **selects** the mask voxels. Zeroing the background of both images instead and averaging
  over the whole volume adds exactly ``10 * log10(N_total / N_mask)`` dB (the McGinnis pitfall);
* :func:`ssim` is the Gaussian-window SSIM of Wang et al. (window 11, sigma 1.5, K1 0.01, K2 0.03, population
  covariance). Its value equals ``monai.metrics.SSIMMetric(spatial_dims, data_range=1)`` and
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1)``; it is computed with three separable 1D filters, which is much faster than MONAI's dense 3D
  convolution on full volumes.

Border handling: MONAI convolves without padding ("valid") and averages the SSIM map over the valid positions;
skimage filters with reflection and then crops ``(win_size - 1) // 2`` voxels from every border before averaging.
Both average exactly the same positions with exactly the same window, so all three agree (up to MONAI's float32
arithmetic). Here the map is defined on the valid region only; a voxel closer than ``(win_size - 1) // 2`` to a
border has no SSIM value (NaN in the returned map). In-mask SSIM is the mean of the map over mask voxels **inside
the valid region**; mask voxels within the border band are ignored (a mask entirely within the band gives NaN and a
warning).

All functions accept numpy arrays or torch tensors (including MONAI ``MetaTensor``), compute in float64 on the CPU
and return Python floats; they are evaluation metrics, not differentiable losses.
"""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np
from scipy import ndimage

__all__ = ["psnr", "ssim", "gaussian_window_1d", "slicewise", "as_numpy", "high_frequency_ratio",
           "high_frequency_error"]


def as_numpy(x: Any, name: str = "input") -> np.ndarray:
    """Return ``x`` as a numpy array (torch tensors are detached and moved to the CPU; no copy when possible)."""
    if x is None:
        raise ValueError(f"{name} is None; an array is required.")
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor / MetaTensor without importing torch
        x = x.detach().cpu()
        if hasattr(x, "as_tensor"):  # MetaTensor -> plain tensor
            x = x.as_tensor()
        x = x.numpy()
    return np.asarray(x)


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p = as_numpy(pred, "pred")
    t = as_numpy(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape, got {p.shape} and {t.shape}.")
    if p.size == 0:
        raise ValueError("pred and target are empty.")
    for name, a in (("pred", p), ("target", t)):
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise ValueError(f"{name} must be numeric, got dtype {a.dtype}.")
    p = p.astype(np.float64, copy=False)
    t = t.astype(np.float64, copy=False)
    for name, a in (("pred", p), ("target", t)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or Inf values.")
    return p, t


def _check_data_range(data_range: Any, target: np.ndarray) -> float:
    """Validate ``data_range``: explicit, finite, positive, and not smaller than the target's span.

    The span check catches the commonest silent error (unnormalised data scored with ``data_range=1``, which MONAI
    accepts without complaint): normalise first or pass the true range.
    """
    if data_range is None:
        raise ValueError(
            "data_range must be given explicitly (1.0 after normalize_to_reference); "
            "it is never inferred from the data."
        )
    try:
        dr = float(data_range)
    except (TypeError, ValueError):
        raise ValueError(f"data_range must be a positive number, got {data_range!r}.") from None
    if not math.isfinite(dr) or dr <= 0:
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}.")
    span = float(target.max() - target.min())
    if span > dr * (1.0 + 1e-6) + 1e-12:
        raise ValueError(
            f"target spans {span:.6g}, more than data_range={dr:.6g}; normalise the images first "
            "(monai_inr.metrics.normalize_to_reference) or pass the true data_range."
        )
    return dr


def _mask_array(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    m = as_numpy(mask, "mask")
    if m.shape != shape:
        try:
            m = np.broadcast_to(m, shape)
        except ValueError:
            raise ValueError(f"mask shape {m.shape} does not match the image shape {shape}.") from None
    if np.issubdtype(m.dtype, np.floating) and not np.isfinite(m).all():
        raise ValueError("mask contains NaN or Inf values.")
    m = m != 0
    if not m.any():
        raise ValueError("mask selects no voxels (empty foreground).")
    return m


def psnr(pred: Any, target: Any, data_range: float = 1.0, mask: Any = None) -> float:
    """Peak signal-to-noise ratio ``10 * log10(data_range**2 / MSE)`` in dB.

    Args:
        pred: prediction, any shape (numpy array or torch tensor).
        target: reference, same shape as ``pred``.
        data_range: peak-to-peak range of the data (1.0 after :func:`normalize_to_reference`). ``None`` raises; it is
            never inferred from the data. The target's span must not exceed it.
        mask: optional foreground mask (nonzero = inside), same shape as the images or broadcastable to it. The MSE is
            averaged over the **selected** voxels only (not over a zeroed whole volume).

    Returns:
        PSNR as a float; ``inf`` when the selected voxels are identical.

    Raises:
        ValueError: mismatched shapes, NaN/Inf input, invalid ``data_range``, empty mask.
    """
    p, t = _pair(pred, target)
    dr = _check_data_range(data_range, t)
    diff = p - t
    if mask is not None:
        diff = diff[_mask_array(mask, p.shape)]
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return math.inf
    return float(10.0 * math.log10(dr * dr / mse))


def gaussian_window_1d(win_size: int, sigma: float) -> np.ndarray:
    """Normalised 1D Gaussian window of ``win_size`` taps (centred; identical to MONAI's and to scipy's
    ``gaussian_filter`` kernel with ``truncate = (win_size - 1) / (2 * sigma)``)."""
    r = (win_size - 1) / 2.0
    d = np.arange(win_size, dtype=np.float64) - r
    w = np.exp(-0.5 * (d / sigma) ** 2)
    return w / w.sum()


def _per_axis(value: Any, n: int, name: str) -> tuple:
    if np.ndim(value) == 0:
        return (value,) * n
    value = tuple(value)
    if len(value) != n:
        raise ValueError(f"{name} needs one value per spatial axis ({n}), got {value}.")
    return value


def _default_workers() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, min(2, n))


def _valid_filter(a: np.ndarray, windows: Sequence[np.ndarray], axes: Sequence[int]) -> np.ndarray:
    """Separable correlation without padding: each filtered axis shrinks by ``len(window) - 1``."""
    for w, ax in zip(windows, axes):
        a = ndimage.correlate1d(a, w, axis=ax, mode="constant", cval=0.0)
        h = (len(w) - 1) // 2
        sl = [slice(None)] * a.ndim
        sl[ax] = slice(h, a.shape[ax] - h)
        a = a[tuple(sl)]
    return a


def ssim(
    pred: Any,
    target: Any,
    data_range: float = 1.0,
    mask: Any = None,
    spatial_dims: int | None = None,
    win_size: int | Sequence[int] = 11,
    sigma: float | Sequence[float] = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    return_map: bool = False,
    workers: int | None = None,
) -> float | tuple[float, np.ndarray]:
    """Gaussian-window structural similarity (Wang et al. 2004) with population covariance.

    Equals ``monai.metrics.SSIMMetric(spatial_dims, data_range, kernel_type="gaussian", win_size, kernel_sigma, k1,
    k2)`` (mean reduction) and, for the defaults, skimage's ``structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=...)``. See the module docstring for the border convention.

    Args:
        pred: prediction (numpy array or torch tensor).
        target: reference, same shape.
        data_range: peak-to-peak data range (1.0 after normalisation); ``None`` raises; never inferred.
        mask: optional foreground mask (nonzero = inside), same shape or broadcastable. In-mask SSIM is the mean of the
            SSIM map over mask voxels that lie in the valid region (at least ``(win_size - 1) // 2`` voxels from every
            border of the filtered axes).
        spatial_dims: number of trailing spatial axes. ``None``: every axis is spatial. Leading axes (batch, channel)
            are independent images; the result is the mean over all of them, like MONAI's mean reduction.
        win_size: odd window size (int or one per spatial axis); must not exceed the image extent.
        sigma: Gaussian standard deviation (float or one per spatial axis).
        k1, k2: stability constants; ``C1 = (k1 * data_range)**2``, ``C2 = (k2 * data_range)**2``.
        return_map: also return the SSIM map, same shape as the input, NaN outside the valid region.
        workers: threads for the five independent filters (``None``: up to 2, bounded by the CPUs available); the
            result does not depend on it.

    Returns:
        SSIM as a float (NaN, with a warning, only if every mask voxel lies in the border band), or
        ``(value, map)`` when ``return_map``.

    Raises:
        ValueError: mismatched shapes, NaN/Inf input, invalid ``data_range``, even or too large window, empty mask.
    """
    p, t = _pair(pred, target)
    dr = _check_data_range(data_range, t)
    nd = p.ndim if spatial_dims is None else int(spatial_dims)
    if nd < 1 or nd > p.ndim:
        raise ValueError(f"spatial_dims must be between 1 and the input's {p.ndim} dimensions, got {spatial_dims}.")
    axes = tuple(range(p.ndim - nd, p.ndim))
    wins = tuple(int(w) for w in _per_axis(win_size, nd, "win_size"))
    sigmas = tuple(float(s) for s in _per_axis(sigma, nd, "sigma"))
    for w, ax in zip(wins, axes):
        if w < 1 or w % 2 != 1:
            raise ValueError(f"win_size must be a positive odd integer, got {w}.")
        if w > p.shape[ax]:
            raise ValueError(f"win_size {w} exceeds the image extent {p.shape[ax]} along axis {ax} (shape {p.shape}).")
    if any(not (s > 0 and math.isfinite(s)) for s in sigmas):
        raise ValueError(f"sigma must be positive, got {sigma}.")
    m = None if mask is None else _mask_array(mask, p.shape)

    windows = [gaussian_window_1d(w, s) for w, s in zip(wins, sigmas)]
    operands: list[Callable[[], np.ndarray]] = [
        lambda: p,
        lambda: t,
        lambda: p * p,
        lambda: t * t,
        lambda: p * t,
    ]

    def filt(i: int) -> np.ndarray:
        return _valid_filter(operands[i](), windows, axes)

    n_workers = _default_workers() if workers is None else max(1, int(workers))
    if n_workers > 1 and p.size >= 32**3:
        # scipy.ndimage releases the GIL while filtering; the five filters are independent (same result either way)
        with ThreadPoolExecutor(max_workers=min(n_workers, 5)) as ex:
            mu_x, mu_y, sxx, syy, sxy = ex.map(filt, range(5))
    else:
        mu_x, mu_y, sxx, syy, sxy = (filt(i) for i in range(5))
    sxx -= mu_x * mu_x
    syy -= mu_y * mu_y
    sxy -= mu_x * mu_y
    c1 = (k1 * dr) ** 2
    c2 = (k2 * dr) ** 2
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    smap = num / den

    valid = [slice(None)] * p.ndim
    for w, ax in zip(wins, axes):
        h = (w - 1) // 2
        valid[ax] = slice(h, p.shape[ax] - h)
    valid = tuple(valid)

    if m is None:
        value = float(np.mean(smap))
    else:
        mv = m[valid]
        if not mv.any():
            warnings.warn(
                "ssim: every mask voxel lies within the border band where the SSIM window does not fit; returning NaN.",
                stacklevel=2,
            )
            value = math.nan
        else:
            value = float(np.mean(smap[mv]))
    if return_map:
        full = np.full(p.shape, np.nan, dtype=np.float64)
        full[valid] = smap
        return value, full
    return value


def _slice_has_foreground(a: np.ndarray) -> bool:
    return bool(np.any(a != 0))


def slicewise(
    metric_fn: Callable[..., float],
    pred: Any,
    target: Any = None,
    axes: Sequence[int] = (0, 1, 2),
    mask: Any = None,
    foreground_only: bool = True,
    masked: bool = False,
    return_values: bool = False,
    **kwargs: Any,
) -> float | tuple[float, dict[int, np.ndarray]]:
    """Apply a 2D (or lower-dimensional) metric to every slice along each of ``axes`` and average over slices.

    Every slice along every given axis has equal weight, so an axis contributes in proportion to its slice count (the
    ArSSR convention). Use ``axes=(k,)`` for a 2D method's slice axis.

    Args:
        metric_fn: ``metric_fn(pred_slice, target_slice, **kwargs)``, or ``metric_fn(pred_slice, **kwargs)`` when
            ``target`` is None (no-reference metrics). Must return a float.
        pred: volume (numpy array or torch tensor).
        target: reference volume of the same shape, or None.
        axes: axes to slice along.
        mask: optional foreground mask of the same shape.
        foreground_only: keep only slices with foreground: the mask slice has a nonzero voxel, or without a mask the
            reference slice (``target``, else ``pred``) has a nonzero voxel.
        masked: pass the mask slice to ``metric_fn`` as ``mask=`` (in-mask metric per slice). Requires ``mask``;
            slices whose mask slice is empty are skipped.
        return_values: also return the per-slice values, ``{axis: array}`` (NaN for skipped slices).
        **kwargs: forwarded to ``metric_fn`` (e.g. ``data_range=1.0``).

    Returns:
        Mean over the kept slices whose value is not NaN (NaN if none), or ``(mean, values)``.
    """
    p = as_numpy(pred, "pred")
    t = None if target is None else as_numpy(target, "target")
    if t is not None and t.shape != p.shape:
        raise ValueError(f"pred and target must have the same shape, got {p.shape} and {t.shape}.")
    m = None
    if mask is not None:
        m = as_numpy(mask, "mask")
        if m.shape != p.shape:
            raise ValueError(f"mask shape {m.shape} does not match the image shape {p.shape}.")
        m = m != 0
    elif masked:
        raise ValueError("masked=True needs a mask.")
    axes = tuple(int(a) for a in axes)
    for a in axes:
        if not -p.ndim <= a < p.ndim:
            raise ValueError(f"axis {a} out of range for a {p.ndim}D volume.")
    if len(set(a % p.ndim for a in axes)) != len(axes):
        raise ValueError(f"axes must be distinct, got {axes}.")
    ref = t if t is not None else p

    per_axis: dict[int, np.ndarray] = {}
    kept: list[float] = []
    for ax in axes:
        n = p.shape[ax]
        vals = np.full(n, np.nan)
        for i in range(n):
            ms = None if m is None else np.take(m, i, axis=ax)
            if masked and not ms.any():
                continue
            if foreground_only:
                fg = ms.any() if ms is not None else _slice_has_foreground(np.take(ref, i, axis=ax))
                if not fg:
                    continue
            args = [np.take(p, i, axis=ax)]
            if t is not None:
                args.append(np.take(t, i, axis=ax))
            kw = dict(kwargs)
            if masked:
                kw["mask"] = ms
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                v = float(metric_fn(*args, **kw))
            vals[i] = v
            if not math.isnan(v):
                kept.append(v)
        per_axis[ax] = vals
    value = float(np.mean(kept)) if kept else math.nan
    if return_values:
        return value, per_axis
    return value


def high_frequency_ratio(pred: Any, target: Any, axis: int, mask: Any = None, sigma: float = 1.0) -> float:
    """Energy of ``pred``'s fine detail along ``axis`` over the ground truth's: 1 for the right amount, < 1 for a
    blurred answer, > 1 for grain or streaks (a thick-slice fit whose finest encoding levels are unconstrained between
    the acquired slices).

    Fine detail is what a 1D Gaussian of ``sigma`` voxels along ``axis`` removes (``x - G_sigma * x``: spatial
    frequencies above about ``1 / (2 pi sigma)`` cycles per voxel), computed on the whole volume and summed inside
    ``mask``, so the mask's own edges add nothing.
    """
    from scipy.ndimage import gaussian_filter1d

    p, t = _pair(pred, target)
    m = np.ones(t.shape, bool) if mask is None else _mask_array(mask, t.shape)

    def energy(a: np.ndarray) -> float:
        return float(((a - gaussian_filter1d(a, float(sigma), axis=axis, mode="nearest"))[m] ** 2).sum())

    ref = energy(t)
    return float(energy(p) / ref) if ref > 0 else float("nan")


def high_frequency_error(pred: Any, target: Any, axis: int, mask: Any = None, sigma: float = 1.0) -> float:
    """Energy of the fine detail of the error ``pred - target`` along ``axis`` over the ground truth's fine detail
    (:func:`high_frequency_ratio` of the error): 0 when the fine detail is recovered exactly, about 1 when it is left
    out (an interpolation), above 1 when wrong detail is added (grain or streaks between the acquired slices)."""
    p, t = _pair(pred, target)
    return high_frequency_ratio(p - t, t, axis, mask=mask, sigma=sigma)
