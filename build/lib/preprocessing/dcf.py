"""Analytic density compensation for centre-out radial trajectories, and k-space apodisation windows.

Every DCF here is in physical units: the k-space volume (1/cm^3) each sample stands for, so that the gridding sum
``x(r) = sum_m w_m y_m exp(+2 pi i k_m . r)`` approximates the inverse Fourier integral and returns the object in the
units of the data (concentration, when the data are ``Y(k) = integral rho(r) exp(-2 pi i k . r) dr``).

* ``"shells"`` (default for spoke-structured trajectories): each sample gets the volume of its spherical shell
  (boundaries half-way to its radial neighbours) divided by the number of spokes. This is exact for any centre-out
  radial readout whatever its speed profile; for DA-3DPR it reduces to ``|k|^2`` below ``k0`` and ``k0^2`` beyond.
* ``"radial"``: ``|k|^2``; ``"da"``: ``min(|k|, k0)^2`` (Nagel's analytic density-adapted weights); both scaled so that
  their sum is the volume of the sampled sphere ``4/3 pi kmax^3``.

Iterative Pipe-Menon estimates are deliberately absent: for 3D radial they overweight the centre (project notes).
"""

from __future__ import annotations

import numpy as np

__all__ = ["shell_dcf", "analytic_dcf", "compute_dcf", "window", "WINDOWS"]

WINDOWS = ("none", "hamming", "fermi")


def shell_dcf(k: np.ndarray) -> np.ndarray:
    """Shell-volume DCF for a (spokes, samples, 3) centre-out radial trajectory; returns (spokes, samples) float64."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim != 3 or k.shape[-1] != 3 or k.shape[1] < 2:
        raise ValueError(f"shell_dcf needs a (spokes, samples>=2, 3) trajectory, got shape {k.shape}.")
    r = np.linalg.norm(k, axis=-1)
    mids = 0.5 * (r[:, 1:] + r[:, :-1])
    lower = np.clip(r[:, :1] - (r[:, 1:2] - r[:, :1]) / 2, 0, None)
    upper = r[:, -1:] + (r[:, -1:] - r[:, -2:-1]) / 2
    bounds = np.concatenate([lower, mids, upper], axis=1)
    vol = 4.0 / 3.0 * np.pi * (bounds[:, 1:] ** 3 - bounds[:, :-1] ** 3)
    return np.abs(vol) / k.shape[0]


def analytic_dcf(k: np.ndarray, k0: float | None = None, kmax: float | None = None) -> np.ndarray:
    """``|k|^2`` (``k0=None``) or ``min(|k|, k0)^2`` weights, summing to ``4/3 pi kmax^3`` (default kmax: max|k|)."""
    r = np.linalg.norm(np.asarray(k, dtype=np.float64), axis=-1)
    w = np.minimum(r, k0) ** 2 if k0 is not None else r**2
    kmax = float(r.max()) if kmax is None else float(kmax)
    total = w.sum()
    if total <= 0:
        raise ValueError("analytic DCF: every sample sits at k = 0.")
    return w * (4.0 / 3.0 * np.pi * kmax**3 / total)


def compute_dcf(k: np.ndarray, method: str = "shells", k0: float | None = None) -> np.ndarray:
    """DCF of shape ``k.shape[:-1]`` by ``method`` in ``shells``, ``da``, ``radial`` (see the module docstring)."""
    if method == "shells":
        if np.asarray(k).ndim != 3:
            method = "da" if k0 is not None else "radial"
        else:
            return shell_dcf(k)
    if method == "da":
        if k0 is None:
            raise ValueError("the 'da' DCF needs k0 (the end of the constant-gradient part, 1/cm).")
        return analytic_dcf(k, k0=k0)
    if method == "radial":
        return analytic_dcf(k)
    raise ValueError(f"unknown DCF method {method!r}; use 'shells', 'da' or 'radial'.")


def window(
    k: np.ndarray, kmax: float, kind: str = "none", fermi_cutoff: float = 0.9, fermi_width: float = 0.05
) -> np.ndarray:
    """Radial k-space apodisation of shape ``k.shape[:-1]``.

    * ``hamming``: ``0.54 + 0.46 cos(pi |k| / kmax)`` (0.08 at kmax);
    * ``fermi``: ``1 / (1 + exp((|k| / kmax - cutoff) / width))``;
    * ``none``: ones.
    """
    r = np.linalg.norm(np.asarray(k, dtype=np.float64), axis=-1) / float(kmax)
    if kind == "none":
        return np.ones_like(r)
    if kind == "hamming":
        return 0.54 + 0.46 * np.cos(np.pi * np.clip(r, 0, 1))
    if kind == "fermi":
        return 1.0 / (1.0 + np.exp((r - fermi_cutoff) / fermi_width))
    raise ValueError(f"unknown window {kind!r}; use one of {WINDOWS}.")
