"""Density-adapted 3D radial (DA-3DPR, Nagel et al. 2009) trajectories with 3D golden-means spoke ordering.

Readout (k in 1/cm, t in s from the start of the readout, gradient G in G/cm, gamma_bar in Hz/G):

* ``k(t) = gamma_bar * G * t`` for ``t <= t0 = k0 / (gamma_bar * G)`` with ``k0 = p * kmax``;
* ``k(t) = (3 * gamma_bar * G * k0^2 * (t - t0) + k0^3) ** (1/3)`` beyond, so every spherical shell gets the same
  average sample density;
* ``T_RO = t0 + (kmax^3 - k0^3) / (3 * gamma_bar * G * k0^2)``.

``p = 1`` gives plain centre-out 3D radial (constant gradient all the way).
Spoke directions: 3D golden means (Chan et al. 2009), polar angle ``arccos(2 frac(n phi1) - 1)`` (full sphere),
azimuth ``2 pi frac(n phi2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "GAMMA_BAR_NA23_HZ_PER_G",
    "GOLDEN_MEANS_3D",
    "DAReadout",
    "Trajectory",
    "golden_means_directions",
    "da_radial_trajectory",
    "kmax_for_spacing",
    "nyquist_spokes",
]

#: 23Na gyromagnetic ratio / 2 pi: 11.262 MHz/T = 1126.2 Hz/G.
GAMMA_BAR_NA23_HZ_PER_G = 1126.2
#: The two 3D golden means (eigenvector of the Fibonacci-like 3x3 recursion, Chan et al. 2009).
GOLDEN_MEANS_3D = (0.465571231876768, 0.682327803828019)


@dataclass(frozen=True)
class DAReadout:
    """One density-adapted centre-out readout.

    Attributes:
        kmax: largest |k| (1/cm); ``1 / (2 * largest voxel edge in cm)`` for a target grid.
        p: ``k0 / kmax``, the fraction of the readout at constant gradient (Nagel: 0.4; 1.0 = plain radial).
        gradient: readout gradient amplitude (G/cm) during the constant part.
        gamma_bar: gyromagnetic ratio / 2 pi in Hz/G.
    """

    kmax: float
    p: float = 0.4
    gradient: float = 0.215
    gamma_bar: float = GAMMA_BAR_NA23_HZ_PER_G

    def __post_init__(self):
        if not (self.kmax > 0 and 0 < self.p <= 1 and self.gradient > 0 and self.gamma_bar > 0):
            raise ValueError(f"invalid DA readout parameters: {self}.")

    @property
    def k0(self) -> float:
        return self.p * self.kmax

    @property
    def slope(self) -> float:
        """gamma_bar * G in 1/(cm s)."""
        return self.gamma_bar * self.gradient

    @property
    def t0(self) -> float:
        return self.k0 / self.slope

    @property
    def duration(self) -> float:
        """Readout length ``T_RO`` in s."""
        return self.t0 + (self.kmax**3 - self.k0**3) / (3.0 * self.slope * self.k0**2)

    def k_of_t(self, t: np.ndarray) -> np.ndarray:
        """|k| (1/cm) at readout times ``t`` (s)."""
        t = np.asarray(t, dtype=np.float64)
        lin = self.slope * t
        da = np.cbrt(3.0 * self.slope * self.k0**2 * np.clip(t - self.t0, 0, None) + self.k0**3)
        return np.where(t <= self.t0, lin, da)

    def to_dict(self) -> dict:
        return {
            "kmax_per_cm": self.kmax,
            "p": self.p,
            "k0_per_cm": self.k0,
            "gradient_G_per_cm": self.gradient,
            "gamma_bar_Hz_per_G": self.gamma_bar,
            "t0_s": self.t0,
            "readout_s": self.duration,
        }


@dataclass
class Trajectory:
    """A centre-out 3D radial trajectory.

    Attributes:
        k: (spokes, samples, 3) float32 k-space positions in 1/cm along the reconstruction array axes.
        times: (samples,) float64 time of each sample after excitation in s (TE + readout time).
        readout: the readout design.
        te: echo time (s), the time of the first sample.
        dwell: sample spacing in s.
    """

    k: np.ndarray
    times: np.ndarray
    readout: DAReadout
    te: float
    dwell: float

    @property
    def n_spokes(self) -> int:
        return int(self.k.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.k.shape[1])

    def to_dict(self) -> dict:
        return {
            "type": "density-adapted 3D radial (DA-3DPR), 3D golden-means ordering, full sphere",
            "n_spokes": self.n_spokes,
            "n_samples": self.n_samples,
            "te_s": self.te,
            "dwell_s": self.dwell,
            **self.readout.to_dict(),
        }


def golden_means_directions(n_spokes: int, offset: int = 0) -> np.ndarray:
    """(n_spokes, 3) unit vectors of the 3D golden-means ordering over the full sphere."""
    if n_spokes < 1:
        raise ValueError(f"n_spokes must be at least 1, got {n_spokes}.")
    n = np.arange(offset, offset + n_spokes, dtype=np.float64)
    phi1, phi2 = GOLDEN_MEANS_3D
    cos_theta = 2.0 * np.mod(n * phi1, 1.0) - 1.0
    azim = 2.0 * np.pi * np.mod(n * phi2, 1.0)
    sin_theta = np.sqrt(np.clip(1.0 - cos_theta**2, 0, None))
    return np.stack([sin_theta * np.cos(azim), sin_theta * np.sin(azim), cos_theta], axis=-1)


def da_radial_trajectory(
    n_spokes: int,
    n_samples: int,
    kmax: float,
    p: float = 0.4,
    gradient: float = 0.215,
    te: float = 0.3e-3,
    gamma_bar: float = GAMMA_BAR_NA23_HZ_PER_G,
) -> Trajectory:
    """A DA-3DPR trajectory: ``n_samples`` equally spaced in time from k = 0 to k = kmax on each spoke.

    The dwell time is ``T_RO / (n_samples - 1)``, i.e. the scanner's 10 us sampling decimated to the simulation's
    ``n_samples`` (e.g. 200 samples of 50 us over a 10 ms readout).
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2, got {n_samples}.")
    ro = DAReadout(kmax=kmax, p=p, gradient=gradient, gamma_bar=gamma_bar)
    dwell = ro.duration / (n_samples - 1)
    t = np.arange(n_samples, dtype=np.float64) * dwell
    radius = ro.k_of_t(t)
    radius[-1] = kmax  # exact end point despite rounding
    dirs = golden_means_directions(n_spokes)
    k = (dirs[:, None, :] * radius[None, :, None]).astype(np.float32)
    return Trajectory(k=k, times=te + t, readout=ro, te=te, dwell=dwell)


def kmax_for_spacing(spacing_mm) -> float:
    """``1 / (2 * largest voxel edge)`` in 1/cm: the largest isotropic |k| a grid with this spacing represents."""
    return 1.0 / (2.0 * float(np.max(spacing_mm)) / 10.0)


def nyquist_spokes(kmax: float, fov_mm: float) -> int:
    """Nyquist spoke count of a full-sphere centre-out radial acquisition: ``4 pi (kmax * FOV)^2`` (= pi N^2)."""
    return int(np.ceil(4.0 * np.pi * (kmax * fov_mm / 10.0) ** 2))
