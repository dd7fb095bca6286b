"""No-reference sharpness indices for 2D images: PSI (after Feichtenhofer et al. 2013) and LPC-SI (after Hassen et al.
2013), written from the papers' descriptions (no reference code was used; the LPC-SI reference code's licence forbids
adaptation and the PSI reference depends on MATLAB's ``edge``). Both are *re-implementations*: values are of the
published kind and order of magnitude but are not bit-compatible with the authors' MATLAB programs.

* :func:`psi` - Perceptual Sharpness Index. C. Feichtenhofer, H. Fassold, P. Schallauer, "A Perceptual Image Sharpness
  Metric Based on Local Edge Gradient Analysis", IEEE Signal Processing Letters 20(4):379-382, 2013. Edge pixels
  (Sobel gradient, thinned), edge widths measured along the gradient direction, block-wise pooling (32 x 32 blocks)
  and a final average over the sharpest 22 % of the blocks. Higher = sharper; unit 1 / pixel.
* :func:`lpc_si` - Local Phase Coherence Sharpness Index. R. Hassen, Z. Wang, M. M. A. Salama, "Image Sharpness
  Assessment Based on Local Phase Coherence", IEEE Transactions on Image Processing 22(7):2798-2810, 2013. Complex
  (log-Gabor) coefficients at three scales ``1, 3/2, 2`` and eight orientations; local phase coherence
  ``cos(phi_1 - 3 phi_2 + 2 phi_3)`` (the weights ``[1, -3, 2]`` cancel the phase of an isolated sharp feature across
  the three scales); magnitude-weighted orientation pooling with a stabilising constant ``C = 2`` (8-bit units); a
  rank-weighted spatial pooling that emphasises the most coherent (sharpest) locations (``beta_k = 1e-4``). Higher =
  sharper; in (-1, 1), typically 0.8-0.98 for MR slices.

Conventions and validated properties (``tests/test_sharpness.py``):

* input: one 2D array (numpy or torch); ``data_range`` is the intensity span mapped to 8-bit units for LPC-SI's
  constant ``C`` (PSI is invariant to positive affine intensity changes);
* a constant image has no edges and no phase structure: both return ``0.0`` (a defined value, never NaN);
* Gaussian blur sweeps ``sigma = 0, 0.5, 1, 2, 4`` on brain slices give strictly decreasing scores for both indices,
  and cubic up-sampling by 2-4 scores below the source image;
* flips and transposition change the scores only through the block grid (PSI) / floating point (LPC-SI).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["psi", "lpc_si", "PSI_DEFAULTS", "LPC_SI_DEFAULTS"]

PSI_DEFAULTS: dict[str, Any] = {
    "block_size": 32,
    "top_fraction": 0.22,
    "min_edges_per_block": 2,
    "edge_threshold": 4.0,
}

LPC_SI_DEFAULTS: dict[str, Any] = {
    "scales": (1.0, 1.5, 2.0),
    "weights": (1.0, -3.0, 2.0),
    "num_orientations": 8,
    "centre_frequency": 0.5 * math.pi,
    "radial_sigma": 0.5,
    "angular_sigma": 0.3,
    "c": 2.0,
    "beta_k": 1e-4,
}


def _as_image(image: Any) -> np.ndarray:
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image, dtype=np.float64)
    arr = np.squeeze(arr)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {np.shape(image)}.")
    if min(arr.shape) < 3:
        raise ValueError(f"the image needs at least 3 pixels per axis, got {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError("the image contains NaN or Inf values.")
    return arr


# ---------------------------------------------------------------------------------------------------------------------
# PSI


def _trace(img: np.ndarray, rows: np.ndarray, cols: np.ndarray, axis: np.ndarray, step: np.ndarray, rising: bool,
           max_steps: int) -> np.ndarray:
    """Walk from each pixel along ``axis`` (0 rows, 1 columns) in direction ``step`` while the intensity keeps rising
    (``rising``) or falling; return the final coordinate along that axis."""
    h, w = img.shape
    r, c = rows.copy(), cols.copy()
    active = np.ones(r.shape, dtype=bool)
    dr = np.where(axis == 0, step, 0)
    dc = np.where(axis == 1, step, 0)
    for _ in range(max_steps):
        if not active.any():
            break
        nr, nc = r + dr, c + dc
        inside = (nr >= 0) & (nr < h) & (nc >= 0) & (nc < w)
        nr_s, nc_s = np.clip(nr, 0, h - 1), np.clip(nc, 0, w - 1)
        cur, nxt = img[r, c], img[nr_s, nc_s]
        go = active & inside & ((nxt > cur) if rising else (nxt < cur))
        r = np.where(go, nr, r)
        c = np.where(go, nc, c)
        active = go
    return np.where(axis == 0, r, c)


def psi(
    image: Any,
    block_size: int = PSI_DEFAULTS["block_size"],
    top_fraction: float = PSI_DEFAULTS["top_fraction"],
    min_edges_per_block: int = PSI_DEFAULTS["min_edges_per_block"],
    edge_threshold: float = PSI_DEFAULTS["edge_threshold"],
    return_details: bool = False,
):
    """Perceptual Sharpness Index of a 2D image (after Feichtenhofer et al. 2013; see the module docstring).

    Steps:

    1. Sobel gradients ``g_x, g_y``; edge pixels are those with ``|g|^2 > edge_threshold * mean(|g|^2)`` (the
       automatic Sobel threshold of MATLAB's ``edge``) that are local maxima of ``|g|`` along the dominant gradient
       axis (thinning); the one-pixel image border is excluded.
    2. Edge width along the gradient: from each edge pixel walk along the dominant axis (columns if
       ``|g_x| >= |g_y|``, else rows) up the intensity slope until it stops rising (local maximum) and down until it
       stops falling (local minimum); the width is the distance between the two extrema times ``|cos|`` of the angle
       between the gradient and that axis (the width measured in the gradient direction).
    3. Blocks of ``block_size`` pixels with at least ``min_edges_per_block`` edge pixels get the local sharpness
       ``1 / mean(edge width)``.
    4. PSI is the mean over the sharpest ``top_fraction`` of those blocks (at least one). No edge block: 0.

    Args:
        image: 2D array.
        block_size, top_fraction, min_edges_per_block, edge_threshold: see above (defaults :data:`PSI_DEFAULTS`:
            32, 0.22 and 2 follow the published MATLAB parameters ``blocksize``, ``percentile`` and ``threshold_w``;
            here the last is read as the minimum edge count of a block).
        return_details: also return ``{"edges", "widths", "blocks"}``.

    Returns:
        PSI (float, 1 / pixel); with ``return_details`` a tuple ``(psi, details)``.
    """
    img = _as_image(image)
    empty = {"edges": 0, "widths": np.zeros(0), "blocks": np.zeros(0)}
    if float(img.max() - img.min()) <= 0.0:
        return (0.0, empty) if return_details else 0.0
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}.")
    gy = ndimage.sobel(img, axis=0, mode="nearest")
    gx = ndimage.sobel(img, axis=1, mode="nearest")
    mag2 = gx * gx + gy * gy
    thr = edge_threshold * float(mag2.mean())
    horizontal = np.abs(gx) >= np.abs(gy)
    pad = np.pad(mag2, 1, mode="constant")
    left, right = pad[1:-1, :-2], pad[1:-1, 2:]
    up, down = pad[:-2, 1:-1], pad[2:, 1:-1]
    nms = np.where(horizontal, (mag2 > left) & (mag2 >= right), (mag2 > up) & (mag2 >= down))
    edges = (mag2 > thr) & nms
    edges[0, :] = edges[-1, :] = edges[:, 0] = edges[:, -1] = False
    rows, cols = np.nonzero(edges)
    if rows.size == 0:
        return (0.0, empty) if return_details else 0.0
    hz = horizontal[rows, cols]
    axis = np.where(hz, 1, 0)
    g_axis = np.where(hz, gx[rows, cols], gy[rows, cols])
    step = np.where(g_axis >= 0, 1, -1)
    max_steps = int(max(img.shape))
    hi = _trace(img, rows, cols, axis, step, True, max_steps)
    lo = _trace(img, rows, cols, axis, -step, False, max_steps)
    cos = np.abs(g_axis) / np.sqrt(mag2[rows, cols])
    widths = np.abs(hi - lo).astype(np.float64) * cos
    keep = widths > 0
    rows, cols, widths = rows[keep], cols[keep], widths[keep]
    if widths.size == 0:
        return (0.0, empty) if return_details else 0.0
    nbx = -(-img.shape[1] // block_size)
    block = (rows // block_size) * nbx + cols // block_size
    n_blocks = (-(-img.shape[0] // block_size)) * nbx
    counts = np.bincount(block, minlength=n_blocks)
    sums = np.bincount(block, weights=widths, minlength=n_blocks)
    valid = counts >= max(1, int(min_edges_per_block))
    if not valid.any():
        return (0.0, {"edges": int(widths.size), "widths": widths, "blocks": np.zeros(0)}) if return_details else 0.0
    sharp = np.sort(counts[valid] / sums[valid])[::-1]
    n_top = max(1, int(math.ceil(top_fraction * sharp.size)))
    value = float(sharp[:n_top].mean())
    if return_details:
        return value, {"edges": int(widths.size), "widths": widths, "blocks": sharp}
    return value


# ---------------------------------------------------------------------------------------------------------------------
# LPC-SI


_FILTER_CACHE: dict[tuple, np.ndarray] = {}


def _log_gabor_bank(shape: tuple[int, int], scales, num_orientations: int, centre: float, radial_sigma: float,
                    angular_sigma: float) -> np.ndarray:
    """One-sided (analytic) log-Gabor filters ``(len(scales), num_orientations, H, W)`` in the FFT layout."""
    key = (shape, tuple(scales), num_orientations, centre, radial_sigma, angular_sigma)
    if key in _FILTER_CACHE:
        return _FILTER_CACHE[key]
    fy = np.fft.fftfreq(shape[0]) * 2 * np.pi
    fx = np.fft.fftfreq(shape[1]) * 2 * np.pi
    wy, wx = np.meshgrid(fy, fx, indexing="ij")
    rho = np.hypot(wx, wy)
    theta = np.arctan2(wy, wx)
    rho_safe = np.where(rho > 0, rho, 1.0)
    bank = np.zeros((len(scales), num_orientations) + tuple(shape))
    for i, s in enumerate(scales):
        radial = np.exp(-(np.log(rho_safe / (centre / s)) ** 2) / (2 * radial_sigma**2))
        radial[rho == 0] = 0.0
        for j in range(num_orientations):
            t = j * np.pi / num_orientations
            d = np.angle(np.exp(1j * (theta - t)))  # wrapped to (-pi, pi]
            angular = np.where(np.abs(d) < np.pi / 2, np.exp(-(d**2) / (2 * angular_sigma**2)), 0.0)
            bank[i, j] = radial * angular
    if len(_FILTER_CACHE) > 32:
        _FILTER_CACHE.clear()
    _FILTER_CACHE[key] = bank
    return bank


def lpc_si(
    image: Any,
    data_range: float | None = 1.0,
    scales=LPC_SI_DEFAULTS["scales"],
    weights=LPC_SI_DEFAULTS["weights"],
    num_orientations: int = LPC_SI_DEFAULTS["num_orientations"],
    centre_frequency: float = LPC_SI_DEFAULTS["centre_frequency"],
    radial_sigma: float = LPC_SI_DEFAULTS["radial_sigma"],
    angular_sigma: float = LPC_SI_DEFAULTS["angular_sigma"],
    c: float = LPC_SI_DEFAULTS["c"],
    beta_k: float = LPC_SI_DEFAULTS["beta_k"],
    return_map: bool = False,
):
    """Local Phase Coherence Sharpness Index of a 2D image (after Hassen et al. 2013; see the module docstring).

    Steps:

    1. The image is scaled by ``255 / data_range`` (8-bit units, for which the constant ``c`` is defined;
       ``data_range=None`` uses the image's own span), reflect-padded and transformed with a bank of one-sided
       log-Gabor filters: scale ``s`` has the centre frequency ``centre_frequency / s`` (a dilation family: same
       log-radial width ``radial_sigma``), orientation ``j`` is centred on ``j pi / num_orientations`` with an angular
       Gaussian of width ``angular_sigma`` (radians). The responses ``c_{s,j}(x)`` are complex.
    2. Phase coherence per orientation: ``S_j = Re(c_1^{w_1} c_2^{w_2} c_3^{w_3}) / |...|`` with integer weights
       ``w = (1, -3, 2)`` (negative powers taken as powers of the conjugate), i.e. ``cos(sum w_i phi_i)``; ``sum w_i =
       0`` and ``sum w_i / s_i = 0`` make it 1 at isolated sharp features.
    3. ``S(x) = sum_j |c_{1,j}| S_j / (sum_j |c_{1,j}| + c)``.
    4. Sort ``S`` descending, ``S_(1) >= ... >= S_(K)``; LPC-SI ``= sum u_k S_(k) / sum u_k`` with
       ``u_k = exp(-((k - 1) / (K - 1)) / beta_k)``.

    Returns:
        LPC-SI (float; 0 for a constant image); with ``return_map`` a tuple ``(lpc_si, S map)``.
    """
    img = _as_image(image)
    span = float(img.max() - img.min())
    if span <= 0.0:
        return (0.0, np.zeros_like(img)) if return_map else 0.0
    w = [int(round(v)) for v in weights]
    if len(w) != len(scales) or any(abs(a - b) > 1e-9 for a, b in zip(w, weights)):
        raise ValueError(f"weights must be integers, one per scale, got {weights} for scales {scales}.")
    rng = span if data_range is None else float(data_range)
    if rng <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}.")
    x = img * (255.0 / rng)
    pad = int(math.ceil(4 * max(scales) * 2 * math.pi / centre_frequency))
    pad = min(pad, *[n - 1 for n in x.shape])
    xp = np.pad(x, pad, mode="reflect")
    spec = np.fft.fft2(xp)
    bank = _log_gabor_bank(xp.shape, scales, num_orientations, centre_frequency, radial_sigma, angular_sigma)
    resp = np.fft.ifft2(spec[None, None] * bank, axes=(-2, -1))[..., pad : pad + x.shape[0], pad : pad + x.shape[1]]
    prod = np.ones(resp.shape[1:], dtype=np.complex128)
    for i, wi in enumerate(w):
        ci = resp[i] if wi >= 0 else np.conj(resp[i])
        prod = prod * ci ** abs(wi)
    mag = np.abs(prod)
    with np.errstate(invalid="ignore", divide="ignore"):
        s_j = np.where(mag > 0, prod.real / np.where(mag > 0, mag, 1.0), 0.0)
    a1 = np.abs(resp[0])
    s_map = (a1 * s_j).sum(0) / (a1.sum(0) + float(c))
    vals = np.sort(s_map.ravel())[::-1]
    k = vals.size
    u = np.exp(-(np.arange(k) / max(k - 1, 1)) / float(beta_k))
    value = float((u * vals).sum() / u.sum())
    return (value, s_map) if return_map else value
