"""Simulated sodium acquisitions (and a misaligned T2w) from the synthetic brain, written in the real raw layout.

Sodium forward model, on a grid ``sim_factor`` (2) times finer than the reconstruction grid so that reconstruction is
not the exact inverse of simulation:

* per voxel, fast and slow amplitudes ``A_f = C f`` and ``A_s = C (1 - f)`` (C the total sodium concentration, mM; f the
  fast fraction) and T2* maps, resampled from the phantom with anti-aliasing;
* the samples are split into ``n_bins`` contiguous readout-time bins; for each bin the decayed image
  ``A_f exp(-t/T2f) + A_s exp(-t/T2s)`` at the bin's mean time (TE + readout time) goes through the NUFFT at that bin's
  samples only (one plan per bin), times smooth coil sensitivities (normalised to unit root-sum-of-squares);
* data are ``Y(k) = V_fine * NUFFT(image)`` (mM cm^3), the Fourier integral of the object, so gridding with a k-space
  volume DCF returns mM;
* complex Gaussian noise with per-channel sigma set so that the white-matter SNR of the gridding reconstruction
  (no window) is ``snr_wm``: image noise per channel is exactly ``sigma * sqrt(sum w^2)`` for DCF ``w``, and the WM
  signal is the mean over eroded WM of the TE-decayed concentration brought to the reconstruction grid.

T2w: the phantom's T2w resampled (anti-aliased, linear) onto a 1 x 1 x 2 mm scanner grid after a random rigid motion;
the fixed(sodium)-to-moving(T2w) world transform is saved as the truth for registration tests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import ndimage

from .dcf import shell_dcf
from .grid import ReconGrid, reference_image, resample_volume
from .nufft import NufftOperator, resolve_backend
from .rawdata import RawData
from .rigid import random_rigid
from .trajectory import Trajectory, da_radial_trajectory

__all__ = [
    "SimulationConfig",
    "PRESETS",
    "get_preset",
    "SodiumMaps",
    "maps_from_subject",
    "coil_sensitivities",
    "simulate_sodium",
    "simulate_t2w",
    "SimulatedSubject",
    "simulate_subject",
    "LABEL_WM",
]

log = logging.getLogger(__name__)

LABEL_WM = 3


@dataclass
class SimulationConfig:
    """Acquisition and simulation parameters (recorded in the raw file's ``meta['simulation']``)."""

    recon_shape: tuple[int, int, int] = (56, 56, 38)
    recon_spacing_mm: tuple[float, float, float] = (4.8572, 4.8572, 4.75)
    n_spokes: int = 9000
    n_samples: int = 200
    te_s: float = 0.3e-3
    p: float = 0.4
    gradient_G_per_cm: float = 0.215
    n_bins: int = 25
    decay: bool = True
    snr_wm: float | None = 8.0
    n_coils: int = 1
    sim_factor: int = 2
    backend: str = "auto"
    kernel_width: int = 4
    max_plan_points: float = 3e7
    t2w_spacing_mm: tuple[float, float, float] = (1.0, 1.0, 2.0)
    t2w_snr: float | None = 40.0
    max_angle_deg: float = 10.0
    max_shift_mm: float = 10.0
    phantom_spacing_mm: float = 1.0

    def __post_init__(self):
        if self.n_spokes < 1 or self.n_samples < 2 or self.n_bins < 1 or self.n_coils < 1 or self.sim_factor < 1:
            raise ValueError(f"invalid simulation settings: {self}.")
        if self.snr_wm is not None and self.snr_wm <= 0:
            raise ValueError(f"snr_wm must be positive (or None for noiseless), got {self.snr_wm}.")

    @property
    def recon_grid_kwargs(self) -> dict:
        return {"shape": tuple(self.recon_shape), "spacing_mm": tuple(self.recon_spacing_mm)}


PRESETS: dict[str, SimulationConfig] = {
    # the paper's native grid; 9,000 golden-means spokes (Nyquist 9,850) x 200 samples of 50 us over a 10 ms DA readout
    "paper": SimulationConfig(),
    # a 48^3 grid at ~4.86 mm (Nyquist 7,240 spokes)
    "fast": SimulationConfig(recon_shape=(48, 48, 48), recon_spacing_mm=(4.86, 4.86, 4.75), n_spokes=7000),
    # tests and quick demos: 24^3 at 9 mm from the 4 mm phantom, Nyquist-sampled, 8 decay bins
    "tiny": SimulationConfig(
        recon_shape=(24, 24, 24), recon_spacing_mm=(9.0, 9.0, 9.0), n_spokes=1900, n_samples=96, n_bins=8,
        t2w_spacing_mm=(2.0, 2.0, 4.0), phantom_spacing_mm=4.0,
    ),
}


def get_preset(name: str, **overrides) -> SimulationConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return replace(PRESETS[name], **overrides)


@dataclass
class SodiumMaps:
    """Sodium tissue maps on one grid: concentration (mM), fast fraction, T2* fast / slow (ms), labels, mask."""

    concentration: np.ndarray
    fast_fraction: np.ndarray
    t2_fast_ms: np.ndarray
    t2_slow_ms: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    t2w: np.ndarray | None = None
    mask: np.ndarray | None = None

    def signal(self, t_s: float | None) -> np.ndarray:
        """Bi-exponential sodium signal at time ``t_s`` (s); ``None`` gives the decay-free concentration."""
        c = self.concentration.astype(np.float64)
        if t_s is None:
            return c
        t_ms = 1e3 * t_s
        f = np.clip(self.fast_fraction, 0, 1)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ef = np.where(self.t2_fast_ms > 0, np.exp(-t_ms / np.maximum(self.t2_fast_ms, 1e-6)), 0.0)
            es = np.where(self.t2_slow_ms > 0, np.exp(-t_ms / np.maximum(self.t2_slow_ms, 1e-6)), 1.0)
        return c * (f * ef + (1 - f) * es)


def maps_from_subject(subject: Any) -> SodiumMaps:
    """Wrap a :func:`monai_inr.data.phantom.make_subject` subject's sodium maps."""
    im = subject.images
    return SodiumMaps(
        concentration=np.asarray(im["sodium"], dtype=np.float32),
        fast_fraction=np.asarray(im["sodium_fast_fraction"], dtype=np.float32),
        t2_fast_ms=np.asarray(im["t2star_short"], dtype=np.float32),
        t2_slow_ms=np.asarray(im["t2star_long"], dtype=np.float32),
        labels=np.asarray(subject.labels, dtype=np.uint8),
        affine=np.asarray(subject.affine, dtype=np.float64),
        t2w=np.asarray(im["t2w"], dtype=np.float32) if "t2w" in im else None,
        mask=None if getattr(subject, "mask", None) is None else np.asarray(subject.mask).astype(bool),
    )


def resample_maps(maps: SodiumMaps, grid: ReconGrid) -> SodiumMaps:
    """Maps on ``grid``: amplitudes anti-aliased + linear, T2* linear, fast fraction recomputed, labels nearest."""
    aff = grid.affine
    c = maps.concentration.astype(np.float32)
    f = np.clip(maps.fast_fraction, 0, 1)
    a_fast = resample_volume(c * f, maps.affine, grid.shape, aff, order=1, antialias=True)
    a_slow = resample_volume(c * (1 - f), maps.affine, grid.shape, aff, order=1, antialias=True)
    conc = np.clip(a_fast + a_slow, 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(conc > 1e-6, np.clip(a_fast, 0, None) / np.maximum(conc, 1e-6), 0.0)
    t2f = resample_volume(maps.t2_fast_ms, maps.affine, grid.shape, aff, order=1, antialias=False)
    t2s = resample_volume(maps.t2_slow_ms, maps.affine, grid.shape, aff, order=1, antialias=False)
    labels = resample_volume(maps.labels.astype(np.float32), maps.affine, grid.shape, aff, order=0, antialias=False)
    return SodiumMaps(
        concentration=conc.astype(np.float32),
        fast_fraction=frac.astype(np.float32),
        t2_fast_ms=t2f,
        t2_slow_ms=t2s,
        labels=np.rint(labels).astype(np.uint8),
        affine=aff,
    )


def coil_sensitivities(grid: ReconGrid, n_coils: int) -> np.ndarray:
    """Smooth complex sensitivities of ``n_coils`` loops on a ring around the FOV (axial plane), unit RSS everywhere."""
    shape = grid.shape
    if n_coils == 1:
        return np.ones((1, *shape), dtype=np.complex64)
    pos = np.stack(
        np.meshgrid(*[(np.arange(n) - n // 2) * s for n, s in zip(shape, grid.spacing_mm)], indexing="ij"), axis=-1
    )
    fov = np.asarray(grid.fov_mm)
    radius = 0.6 * max(fov[0], fov[1])
    width = 0.5 * max(fov[0], fov[1])
    sens = []
    for c in range(n_coils):
        ang = 2 * np.pi * c / n_coils
        centre = np.array([radius * np.cos(ang), radius * np.sin(ang), 0.0])
        d2 = np.sum((pos - centre) ** 2, axis=-1)
        mag = np.exp(-d2 / (2 * width**2))
        phase = ang + 2 * np.pi * (pos[..., 2] / fov[2]) * 0.25 * np.sin(ang)
        sens.append(mag * np.exp(1j * phase))
    sens = np.stack(sens)
    sens /= np.sqrt(np.sum(np.abs(sens) ** 2, axis=0, keepdims=True))
    return sens.astype(np.complex64)


def _time_bins(n_samples: int, n_bins: int) -> list[np.ndarray]:
    return [b for b in np.array_split(np.arange(n_samples), min(n_bins, n_samples)) if b.size]


def simulate_sodium(
    maps_fine: SodiumMaps,
    grid_fine: ReconGrid,
    recon_grid: ReconGrid,
    traj: Trajectory,
    config: SimulationConfig,
    rng: np.random.Generator,
) -> tuple[RawData, dict]:
    """Forward-simulate one acquisition (see the module docstring). Returns the raw data and simulation info."""
    t_start = time.perf_counter()
    backend = resolve_backend(config.backend)
    sens = coil_sensitivities(grid_fine, config.n_coils)
    n_sp, n_s = traj.k.shape[:2]
    data = np.zeros((config.n_coils, n_sp, n_s), dtype=np.complex64)
    v_fine = float(np.prod(grid_fine.spacing_cm))
    bins = _time_bins(n_s, config.n_bins if config.decay else 1)
    for b in bins:
        t_bin = float(traj.times[b].mean()) if config.decay else None
        img = maps_fine.signal(t_bin)
        op = NufftOperator(
            grid_fine.omega(traj.k[:, b].reshape(-1, 3)), grid_fine.shape, backend=backend,
            kernel_width=config.kernel_width, max_plan_points=config.max_plan_points,
        )
        for c in range(config.n_coils):
            y = op.forward(img * sens[c]) * v_fine
            data[c][:, b] = y.reshape(n_sp, b.size)
    t_fwd = time.perf_counter() - t_start

    # noise calibration against the reconstruction the pipeline runs by default (shell DCF, no window)
    w = shell_dcf(traj.k)
    kmax = float(np.linalg.norm(traj.k, axis=-1).max())
    w = w * (4.0 / 3.0 * np.pi * kmax**3 / w.sum())
    te_image = maps_fine.signal(traj.te if config.decay else None)
    ref_te = reference_image(te_image, grid_fine, recon_grid, support="sphere")
    labels_recon = resample_volume(maps_fine.labels.astype(np.float32), grid_fine.affine, recon_grid.shape,
                                   recon_grid.affine, order=0, antialias=False)
    wm = ndimage.binary_erosion(np.rint(labels_recon) == LABEL_WM)
    if wm.sum() < 4:
        wm = np.rint(labels_recon) == LABEL_WM
    s_wm = float(ref_te[wm].mean()) if wm.any() else float(np.percentile(ref_te[ref_te > 0], 50))
    sigma = 0.0
    if config.snr_wm is not None:
        sigma = s_wm / (config.snr_wm * float(np.sqrt(np.sum(w**2))))
        noise = rng.normal(scale=sigma, size=data.shape) + 1j * rng.normal(scale=sigma, size=data.shape)
        data += noise.astype(np.complex64)
    info = {
        "backend": backend,
        "time_forward_s": t_fwd,
        "time_total_s": time.perf_counter() - t_start,
        "n_time_bins": len(bins),
        "noise_sigma_per_channel": sigma,
        "wm_signal_reference": s_wm,
        "wm_voxels_for_snr": int(wm.sum()),
        "image_noise_sigma_expected": sigma * float(np.sqrt(np.sum(w**2))),
        "v_fine_cm3": v_fine,
    }
    raw = RawData(
        kspace=data if config.n_coils > 1 else data[0],
        trajectory=traj.k,
        times=traj.times,
        meta={
            "nucleus": "23Na",
            "trajectory_units": "1/cm",
            "grid": recon_grid.to_dict(),
            "te_s": traj.te,
            "dwell_s": traj.dwell,
            "trajectory": traj.to_dict(),
            "data_units": "mM cm^3 (Fourier integral of the concentration map)",
        },
    )
    return raw, info


def simulate_t2w(
    t2w: np.ndarray,
    affine: np.ndarray,
    spacing_mm=(1.0, 1.0, 2.0),
    moving_to_phantom: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    snr: float | None = 40.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The phantom T2w seen by a scanner grid of ``spacing_mm`` covering the phantom FOV, after a rigid motion.

    ``moving_to_phantom`` maps T2w scanner (world) points to phantom world points (None: no motion). Rician noise with
    sigma = mean foreground / ``snr``.
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    shape_in = np.asarray(t2w.shape)
    s_in = np.linalg.norm(affine[:3, :3], axis=0)
    fov = shape_in * s_in
    shape = tuple(int(np.ceil(f / s)) for f, s in zip(fov, spacing))
    centre = affine[:3, :3] @ ((shape_in - 1) / 2) + affine[:3, 3]
    out_aff = np.eye(4)
    out_aff[:3, :3] = np.diag(spacing)
    out_aff[:3, 3] = centre - spacing * (np.asarray(shape) - 1) / 2
    img = resample_volume(t2w, affine, shape, out_aff, order=1, antialias=True, world_transform=moving_to_phantom)
    img = np.clip(img, 0, None)
    if snr is not None and rng is not None:
        fg = img[img > 0.1 * img.max()]
        sigma = float(fg.mean()) / snr if fg.size else 0.0
        re_part = img + rng.normal(scale=sigma, size=img.shape)
        img = np.sqrt(re_part**2 + rng.normal(scale=sigma, size=img.shape) ** 2)
    return img.astype(np.float32), out_aff


@dataclass
class SimulatedSubject:
    raw: RawData
    t2w: np.ndarray
    t2w_affine: np.ndarray
    truth_fine: np.ndarray  # decay-free concentration on the simulation grid
    truth_recon: np.ndarray  # the same, Fourier-resampled (box) to the reconstruction grid
    labels_fine: np.ndarray
    grid_fine: ReconGrid
    recon_grid: ReconGrid
    fixed_to_moving: np.ndarray  # sodium world -> T2w world (RAS), what registration should recover
    motion: dict
    t2w_truth_on_fine: np.ndarray | None
    info: dict = field(default_factory=dict)


def simulate_subject(
    maps: SodiumMaps,
    config: SimulationConfig,
    seed: int = 0,
    isocenter_mm=None,
    motion: np.ndarray | None = None,
) -> SimulatedSubject:
    """Simulate the sodium raw data and the misaligned T2w of one subject (deterministic given ``seed``).

    Args:
        maps: the subject's maps on the phantom grid (:func:`maps_from_subject`).
        isocenter_mm: RAS position of the k-space phase reference (default: centre of the head mask's bounding box).
        motion: optional fixed-to-moving 4x4 transform (default: :func:`random_rigid` within the config's limits,
            about the isocentre).
    """
    # independent streams: the motion and the T2w noise do not change with the acquisition settings
    rng_noise, rng_motion, rng_t2w = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    if isocenter_mm is None:
        m = maps.mask if maps.mask is not None else maps.concentration > 0
        idx = np.argwhere(m)
        lo, hi = (idx.min(0), idx.max(0)) if idx.size else (np.zeros(3), np.asarray(m.shape) - 1)
        isocenter_mm = np.round(maps.affine[:3, :3] @ ((lo + hi) / 2) + maps.affine[:3, 3], 1)
    recon_grid = ReconGrid(tuple(config.recon_shape), tuple(config.recon_spacing_mm), np.eye(3), tuple(isocenter_mm))
    grid_fine = recon_grid.refined(config.sim_factor)
    maps_fine = resample_maps(maps, grid_fine)
    traj = da_radial_trajectory(
        config.n_spokes, config.n_samples, kmax=recon_grid.kmax, p=config.p, gradient=config.gradient_G_per_cm,
        te=config.te_s,
    )
    raw, info = simulate_sodium(maps_fine, grid_fine, recon_grid, traj, config, rng_noise)
    if motion is None:
        motion, params = random_rigid(rng_motion, config.max_angle_deg, config.max_shift_mm, center_mm=isocenter_mm)
    else:
        params = {"given": True}
    t2w_img = maps.t2w if maps.t2w is not None else maps.concentration
    # the T2w scanner sees the phantom moved: T2w world point x shows phantom point fixed_to_moving^-1 x
    t2w, t2w_aff = simulate_t2w(
        t2w_img, maps.affine, config.t2w_spacing_mm, np.linalg.inv(motion), rng_t2w, config.t2w_snr
    )
    t2w_truth = resample_volume(t2w_img, maps.affine, grid_fine.shape, grid_fine.affine, order=1, antialias=True)
    truth_fine = maps_fine.concentration
    raw.meta["simulation"] = {**asdict(config), "seed": seed, **info}
    return SimulatedSubject(
        raw=raw,
        t2w=t2w,
        t2w_affine=t2w_aff,
        truth_fine=truth_fine,
        truth_recon=reference_image(truth_fine, grid_fine, recon_grid, support="box"),
        labels_fine=maps_fine.labels,
        grid_fine=grid_fine,
        recon_grid=recon_grid,
        fixed_to_moving=motion,
        motion=params,
        t2w_truth_on_fine=t2w_truth,
        info=info,
    )
