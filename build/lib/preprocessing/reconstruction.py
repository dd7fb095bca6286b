"""Sodium image reconstruction from non-Cartesian k-space: gridding (adjoint NUFFT of density-compensated data, optional
Hamming/Fermi apodisation), density-weighted CG least squares, and multi-coil root-sum-of-squares.

Scaling: raw data are taken as samples of the object's Fourier transform ``Y(k) = integral rho(r) exp(-2 pi i k.r) dr``
(the simulator writes exactly this, in mM x cm^3) and the DCF is the k-space volume per sample (1/cm^3), so the
gridding image ``x = A^H (w y)`` comes out in the object's units (mM for simulated data) independently of the grid.
Real scanner data carry an arbitrary receive gain; calibrate with a reference (e.g. CSF or vials) downstream.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from monai_inr.errors import InputError

from .dcf import compute_dcf, window
from .grid import ReconGrid
from .nufft import NufftOperator
from .rawdata import RawData, check_trajectory_range

__all__ = ["ReconConfig", "ReconResult", "reconstruct", "cg_least_squares", "rss", "combine_coils", "normalise_dcf"]

log = logging.getLogger(__name__)


@dataclass
class ReconConfig:
    """Reconstruction options (all recorded in the output sidecar).

    Attributes:
        method: ``gridding`` (adjoint of weighted data) or ``cg`` (density-weighted least squares, started from
            gridding).
        dcf: ``auto`` (the file's DCF if present, else ``shells``), ``shells``, ``da``, ``radial`` or ``file``.
        window: ``none``, ``hamming`` or ``fermi`` k-space apodisation (applied in both methods' data weighting for
            gridding; for CG it filters the solution in k-space via the same weights on the final gridding step).
        backend: NUFFT backend (``pynufft``, ``finufft``, ``dft``, ``auto``).
        kernel_width, oversampling, eps, max_plan_points: NUFFT accuracy and memory settings.
        cg_iterations, cg_tol, cg_lambda: CG settings (Tikhonov ``lambda`` relative to the unit-scaled normal operator).
    """

    method: str = "gridding"
    dcf: str = "auto"
    window: str = "none"
    fermi_cutoff: float = 0.9
    fermi_width: float = 0.05
    backend: str = "auto"
    kernel_width: int = 4
    oversampling: float = 2.0
    eps: float = 1e-6
    max_plan_points: float = 3e7
    cg_iterations: int = 10
    cg_tol: float = 1e-6
    cg_lambda: float = 0.0

    def __post_init__(self):
        if self.method not in ("gridding", "cg"):
            raise ValueError(f"method must be 'gridding' or 'cg', got {self.method!r}.")
        if self.dcf not in ("auto", "shells", "da", "radial", "file"):
            raise ValueError(f"dcf must be auto, shells, da, radial or file, got {self.dcf!r}.")


@dataclass
class ReconResult:
    complex_image: np.ndarray  # combined complex image (single coil: exact; multi-coil: RSS magnitude with sum phase)
    magnitude: np.ndarray  # float32 RSS magnitude
    coil_images: np.ndarray  # (C, *shape) complex64
    grid: ReconGrid
    info: dict = field(default_factory=dict)


def rss(coil_images: np.ndarray) -> np.ndarray:
    """Root-sum-of-squares over the leading coil axis."""
    return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=0)).astype(np.float32)


def combine_coils(coil_images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(complex, magnitude): one coil is returned as is; several give RSS magnitude and the phase of the coil sum."""
    if coil_images.shape[0] == 1:
        c = coil_images[0].astype(np.complex64)
        return c, np.abs(c).astype(np.float32)
    mag = rss(coil_images)
    phase = np.exp(1j * np.angle(coil_images.sum(axis=0)))
    return (mag * phase).astype(np.complex64), mag


def normalise_dcf(w: np.ndarray, kmax: float) -> np.ndarray:
    """Scale weights so they sum to the sampled k-space volume ``4/3 pi kmax^3`` (1/cm^3)."""
    w = np.asarray(w, dtype=np.float64)
    s = w.sum()
    if s <= 0:
        raise ValueError("the DCF sums to zero.")
    return w * (4.0 / 3.0 * np.pi * kmax**3 / s)


def cg_least_squares(
    op: NufftOperator,
    data: np.ndarray,
    weights: np.ndarray,
    voxel_volume: float,
    x0: np.ndarray | None = None,
    n_iter: int = 10,
    tol: float = 1e-6,
    lam: float = 0.0,
) -> tuple[np.ndarray, list[float]]:
    """Solve ``min_x sum_m w_m |V (A x)_m - y_m|^2 + lam/V ||x||^2`` by conjugate gradients on the normal equations.

    The system is written ``(V A^H W A + lam) x = A^H W y``; with ``w`` the k-space volume per sample this operator is
    close to the identity on the sampled band, so CG converges in a few iterations. Returns the image and the
    relative residual norms per iteration.
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    b = op.adjoint(w * np.asarray(data).reshape(-1)).astype(np.complex128)

    def normal(x):
        return voxel_volume * op.normal(x, w).astype(np.complex128) + lam * x

    x = b.copy() if x0 is None else np.asarray(x0, dtype=np.complex128).copy()
    r = b - normal(x)
    p = r.copy()
    rs = np.vdot(r, r).real
    b_norm = max(np.sqrt(np.vdot(b, b).real), 1e-30)
    history = [float(np.sqrt(rs) / b_norm)]
    for _ in range(int(n_iter)):
        if history[-1] < tol:
            break
        ap = normal(p)
        alpha = rs / max(np.vdot(p, ap).real, 1e-300)
        x += alpha * p
        r -= alpha * ap
        rs_new = np.vdot(r, r).real
        history.append(float(np.sqrt(rs_new) / b_norm))
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x.astype(np.complex64), history


def _weights(raw: RawData, config: ReconConfig, kmax: float) -> tuple[np.ndarray, str]:
    k = raw.trajectory
    method = config.dcf
    if method == "file" and raw.dcf is None:
        raise InputError(f"{raw.name}: --dcf file was requested but the file has no 'dcf' array.")
    if method == "auto":
        method = "file" if raw.dcf is not None else "shells"
    if method == "file":
        w = np.asarray(raw.dcf, dtype=np.float64)
    else:
        k0 = (raw.meta.get("trajectory") or {}).get("k0_per_cm")
        if method == "da" and k0 is None:
            raise InputError(f"{raw.name}: the 'da' DCF needs meta['trajectory']['k0_per_cm'].")
        w = compute_dcf(k, method, k0=k0)
    return normalise_dcf(w, kmax), method


def reconstruct(raw: RawData, grid: ReconGrid, config: ReconConfig | None = None) -> ReconResult:
    """Reconstruct every coil of ``raw`` on ``grid`` and combine them (see the module docstring for the scaling)."""
    config = config or ReconConfig()
    t_start = time.perf_counter()
    check_trajectory_range(raw.trajectory, grid.spacing_mm, raw.name)
    k = np.asarray(raw.trajectory, dtype=np.float64)
    kmax_data = float(np.linalg.norm(k, axis=-1).max())
    if kmax_data <= 0:
        raise InputError(f"{raw.name}: every trajectory sample sits at k = 0.")
    w, dcf_used = _weights(raw, config, kmax_data)
    win = window(k, kmax_data, config.window, config.fermi_cutoff, config.fermi_width)
    om = grid.omega(k.reshape(-1, 3))
    t0 = time.perf_counter()
    op = NufftOperator(
        om, grid.shape, backend=config.backend, oversampling=config.oversampling,
        kernel_width=config.kernel_width, eps=config.eps, max_plan_points=config.max_plan_points,
        # CG applies the operator many times: keep pynufft's chunk plans when they fit in 4x the per-plan budget
        keep_plans=True if (config.method == "cg" and len(om) * config.kernel_width**3 <= 4 * config.max_plan_points)
        else None,
    )
    data = raw.coil_data().reshape(raw.n_coils, -1)
    voxel_volume = float(np.prod(grid.spacing_cm))
    coils, residuals = [], []
    for c in range(raw.n_coils):
        if config.method == "gridding":
            coils.append(op.grid(data[c], (w * win).reshape(-1)))
        else:
            x, hist = cg_least_squares(
                op, data[c], w, voxel_volume, n_iter=config.cg_iterations, tol=config.cg_tol, lam=config.cg_lambda
            )
            if config.window != "none":  # apodise the solution: re-grid its own k-space samples with the window
                x = op.grid(voxel_volume * op.forward(x), (w * win).reshape(-1))
            coils.append(x)
            residuals.append(hist)
    coil_images = np.stack(coils).astype(np.complex64)
    t_recon = time.perf_counter() - t0
    cplx, mag = combine_coils(coil_images)
    info = {
        "config": asdict(config),
        "dcf_used": dcf_used,
        "kmax_data_per_cm": kmax_data,
        "grid": grid.to_dict(),
        "n_coils": raw.n_coils,
        "n_samples": int(om.shape[0]),
        "nufft": op.describe(),
        "time_nufft_s": t_recon,
        "time_total_s": time.perf_counter() - t_start,
    }
    if residuals:
        info["cg_relative_residuals"] = residuals
    log.info("reconstructed %d coil(s) on %s with %s/%s in %.2f s", raw.n_coils, grid.shape, config.method,
             op.backend, t_recon)
    return ReconResult(cplx, mag, coil_images, grid, info)
