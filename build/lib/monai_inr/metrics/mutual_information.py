"""Mutual information from a fixed-bin joint histogram (multi-contrast evaluation: McGinnis, Shit et al., MICCAI
2023, eq. 2 and Fig. 3; ``bundles/multi_contrast_inr/docs/README.md``, "Evaluation").

Definition (natural logarithm, so values are in **nats**; divide by ``log(2)`` for bits)::

    MI(A, B) = sum_ij p_ij * log(p_ij / (p_i * q_j)) = H(A) + H(B) - H(A, B)

with ``p_ij`` the joint histogram of the voxel pairs (``bins`` x ``bins``, equal-width bins), normalised to sum to 1,
and ``p_i``, ``q_j`` its marginals. The estimate is a plug-in (histogram) estimate: deterministic, but biased upwards
for independent images by roughly ``(bins - 1)**2 / (2 N)`` nats for ``N`` voxels.

Binning: each image is binned over ``value_range`` (default: its own min/max over the selected voxels); values outside
the range are clipped into the edge bins, so every selected voxel is counted. A constant image gets one occupied bin
(entropy 0, MI 0).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .image_quality import as_numpy

__all__ = ["joint_histogram", "entropy", "mutual_information", "normalized_mutual_information"]

Range = tuple[float, float]


def _resolve_range(values: np.ndarray, rng: Range | None) -> Range:
    if rng is None:
        lo, hi = float(values.min()), float(values.max())
    else:
        lo, hi = (float(v) for v in rng)
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi < lo:
            raise ValueError(f"value_range must be a finite (low, high) pair with low <= high, got {rng}.")
    if hi == lo:  # constant image: one occupied bin, as numpy does
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _split_ranges(value_range: Any) -> tuple[Range | None, Range | None]:
    if value_range is None:
        return None, None
    vr = tuple(value_range)
    if len(vr) != 2:
        raise ValueError(f"value_range must be (low, high) or ((low_a, high_a), (low_b, high_b)), got {value_range}.")
    if all(np.ndim(v) == 0 for v in vr):
        return (vr[0], vr[1]), (vr[0], vr[1])
    if all(np.ndim(v) == 1 and len(v) == 2 for v in vr):
        return tuple(vr[0]), tuple(vr[1])
    raise ValueError(f"value_range must be (low, high) or ((low_a, high_a), (low_b, high_b)), got {value_range}.")


def joint_histogram(
    a: Any,
    b: Any,
    bins: int | Sequence[int] = 32,
    mask: Any = None,
    value_range: Any = None,
) -> np.ndarray:
    """Joint probability table ``P[i, j]`` (sums to 1) of the voxel pairs of ``a`` (rows) and ``b`` (columns).

    Args:
        a, b: images of the same shape (numpy arrays or torch tensors).
        bins: number of equal-width bins (int, or one per image).
        mask: optional mask (nonzero = inside), same shape; only selected voxels are counted.
        value_range: ``(low, high)`` for both images, or ``((low_a, high_a), (low_b, high_b))``; default: each image's
            own min/max over the selected voxels. Values outside are clipped into the edge bins.
    """
    x = as_numpy(a, "a")
    y = as_numpy(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same shape, got {x.shape} and {y.shape}.")
    shape = x.shape
    x = x.astype(np.float64, copy=False).ravel()
    y = y.astype(np.float64, copy=False).ravel()
    if mask is not None:
        m = as_numpy(mask, "mask")
        if m.shape != shape:
            raise ValueError(f"mask shape {m.shape} does not match the image shape {shape}.")
        m = m.ravel() != 0
        x, y = x[m], y[m]
    if x.size == 0:
        raise ValueError("no voxels selected (empty image or empty mask).")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("a or b contains NaN or Inf values in the selected voxels.")
    nb = (bins, bins) if np.ndim(bins) == 0 else tuple(bins)
    if len(nb) != 2 or any(int(n) != n or n < 1 for n in nb):
        raise ValueError(f"bins must be a positive integer (or two), got {bins}.")
    nb = tuple(int(n) for n in nb)
    ra, rb = _split_ranges(value_range)
    ra, rb = _resolve_range(x, ra), _resolve_range(y, rb)
    ix = _bin_index(x, ra, nb[0])
    iy = _bin_index(y, rb, nb[1])
    counts = np.bincount(ix * nb[1] + iy, minlength=nb[0] * nb[1]).reshape(nb)
    return counts / float(x.size)


def _bin_index(v: np.ndarray, rng: Range, n: int) -> np.ndarray:
    """Equal-width bin index in [0, n); the upper edge belongs to the last bin (as in ``numpy.histogram``)."""
    lo, hi = rng
    idx = np.floor((v - lo) * (n / (hi - lo))).astype(np.int64)
    return np.clip(idx, 0, n - 1)


def entropy(p: np.ndarray) -> float:
    """Shannon entropy ``-sum p log p`` in nats of a probability table (zeros ignored; renormalised to sum 1)."""
    p = np.asarray(p, dtype=np.float64).ravel()
    s = p.sum()
    if s <= 0:
        raise ValueError("probability table sums to zero.")
    p = p[p > 0] / s
    return float(-np.sum(p * np.log(p)))


def mutual_information(
    a: Any,
    b: Any,
    bins: int | Sequence[int] = 32,
    mask: Any = None,
    value_range: Any = None,
) -> float:
    """Mutual information in nats (natural log) from a ``bins`` x ``bins`` joint histogram.

    The protocol uses 32 bins inside the ground-truth foreground mask. Symmetric in ``a`` and ``b`` (for equal bins and
    ranges), ``MI(x, x) = H(x)``, ``MI >= 0``. See :func:`joint_histogram` for the arguments.
    """
    pab = joint_histogram(a, b, bins=bins, mask=mask, value_range=value_range)
    pa = pab.sum(axis=1)
    pb = pab.sum(axis=0)
    nz = pab > 0
    outer = np.outer(pa, pb)
    mi = float(np.sum(pab[nz] * np.log(pab[nz] / outer[nz])))
    return max(mi, 0.0)  # exact result is >= 0; remove -1e-17 round-off


def normalized_mutual_information(
    a: Any,
    b: Any,
    bins: int | Sequence[int] = 32,
    mask: Any = None,
    value_range: Any = None,
) -> float:
    """Studholme's normalised MI ``(H(A) + H(B)) / H(A, B)`` in [1, 2] (the definition of
    ``skimage.metrics.normalized_mutual_information``); ``MI = H(A, B) * (NMI - 1)``.

    Two constant images (``H(A, B) = 0``) return 2.0 (identical information content) rather than dividing by zero.
    """
    pab = joint_histogram(a, b, bins=bins, mask=mask, value_range=value_range)
    h_ab = entropy(pab)
    if h_ab == 0.0:
        return 2.0
    return (entropy(pab.sum(axis=1)) + entropy(pab.sum(axis=0))) / h_ab
