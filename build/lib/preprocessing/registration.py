"""Cubic-spline 2x upsampling of sodium and rigid registration of T2w onto it with ANTs (antspyx).

Frames: arrays are (i, j, k) with RAS affines everywhere in this package (nibabel convention). ANTs/ITK work in LPS;
:func:`to_ants` / :func:`from_ants` convert (``affine_lps = diag(-1, -1, 1, 1) @ affine_ras``), and the estimated
transform is returned both as the ANTs ``.mat`` file and as a 4x4 RAS matrix mapping fixed (sodium) world points to
moving (T2w) world points.

Determinism: ITK runs single-threaded (``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1``) with a fixed random seed for the
metric sampling (antspyx's ``set_ants_deterministic``; numpy's and Python's global RNG states are restored after it).
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from monai_inr.coords import spacing_from_affine
from monai_inr.errors import InputError

from .grid import upsampled_affine
from .rigid import euler_xyz_deg, lps_to_ras_matrix, rotation_angle_deg

__all__ = [
    "RegistrationConfig",
    "RegistrationResult",
    "upsample2x",
    "to_ants",
    "from_ants",
    "world_bounds",
    "check_overlap",
    "register_rigid",
    "apply_rigid",
    "import_ants",
]

log = logging.getLogger(__name__)
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def import_ants(deterministic: bool = True, seed: int = 42):
    """Import antspyx; in deterministic mode force one ITK thread and a fixed registration seed."""
    if deterministic:
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"
    import ants

    if deterministic:
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            ants.config.set_ants_deterministic(True, seed_value=int(seed))
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
    return ants


def upsample2x(array: np.ndarray, affine: np.ndarray, clip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Exact 2x cubic-spline upsampling over the same field of view.

    ``scipy.ndimage.zoom(order=3, grid_mode=True, mode="grid-mirror")`` puts the new voxel centres on the exact
    sub-grid (half the spacing, first centre a quarter of an original voxel before the old one), and the affine is
    :func:`monai_inr.coords.fov_affine` of the doubled shape. Cubic-spline overshoot below 0 is clipped.
    """
    arr = np.asarray(array, dtype=np.float32)
    up = ndimage.zoom(arr, 2, order=3, grid_mode=True, mode="grid-mirror")
    if clip:
        np.clip(up, 0, None, out=up)
    return up.astype(np.float32), upsampled_affine(affine, arr.shape, 2)


def to_ants(array: np.ndarray, affine_ras: np.ndarray, ants=None):
    """(i, j, k) array + RAS affine -> ANTsImage (LPS origin/direction, same voxel order)."""
    ants = ants or import_ants(deterministic=False)
    lps = _FLIP @ np.asarray(affine_ras, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing[None, :]
    return ants.from_numpy(
        np.ascontiguousarray(array, dtype=np.float32),
        origin=lps[:3, 3].tolist(),
        spacing=spacing.tolist(),
        direction=direction,
    )


def from_ants(image) -> tuple[np.ndarray, np.ndarray]:
    """ANTsImage -> ((i, j, k) float32 array, RAS affine)."""
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(image.direction, dtype=np.float64) * np.asarray(image.spacing, dtype=np.float64)[None, :]
    lps[:3, 3] = np.asarray(image.origin, dtype=np.float64)
    return image.numpy().astype(np.float32), _FLIP @ lps


def world_bounds(shape, affine: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned world bounding box (mm) of a grid's voxel corners (or of the voxels in ``mask``)."""
    if mask is not None and mask.any():
        idx = np.argwhere(mask)
        lo, hi = idx.min(0) - 0.5, idx.max(0) + 0.5
    else:
        lo, hi = -0.5 * np.ones(3), np.asarray(shape, dtype=np.float64) - 0.5
    corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])])
    world = corners @ affine[:3, :3].T + affine[:3, 3]
    return world.min(0), world.max(0)


def check_overlap(
    fixed: np.ndarray, fixed_affine: np.ndarray, moving: np.ndarray, moving_affine: np.ndarray,
    fixed_name: str = "fixed image", moving_name: str = "moving image", min_fraction: float = 0.05,
) -> float:
    """Fraction of the smaller foreground box that the two foreground boxes share; raise :class:`InputError` below
    ``min_fraction`` (no overlap in scanner space, so registration cannot start)."""
    def fg(a):
        a = np.asarray(a)
        return a > (0.05 * float(a.max()) if a.max() > 0 else 0)

    lo_f, hi_f = world_bounds(fixed.shape, fixed_affine, fg(fixed))
    lo_m, hi_m = world_bounds(moving.shape, moving_affine, fg(moving))
    inter = np.clip(np.minimum(hi_f, hi_m) - np.maximum(lo_f, lo_m), 0, None).prod()
    smaller = min((hi_f - lo_f).prod(), (hi_m - lo_m).prod())
    frac = float(inter / smaller) if smaller > 0 else 0.0
    if frac < min_fraction:
        raise InputError(
            f"{moving_name}: the image does not overlap {fixed_name} in scanner space "
            f"(shared extent {100 * frac:.1f} % "
            f"of the smaller head); check that both come from the same session and carry their scanner geometry."
        )
    return frac


@dataclass
class RegistrationConfig:
    """ANTs rigid registration settings (recorded in the sidecar)."""

    transform: str = "Rigid"
    metric: str = "mattes"
    sampling_bins: int = 32
    sampling_rate: float = 0.2
    iterations: tuple[int, ...] = (1000, 500, 250)
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas: tuple[float, ...] = (2, 1, 0)
    interpolator: str = "bSpline"
    antialias: bool = True
    deterministic: bool = True
    seed: int = 42
    initial: str = "center-of-mass"

    def __post_init__(self):
        if self.transform not in ("Rigid", "Affine", "Translation", "Similarity"):
            raise ValueError(f"transform must be Rigid, Affine, Translation or Similarity, got {self.transform!r}.")
        if self.metric not in ("mattes", "GC", "meansquares"):
            raise ValueError(f"metric must be mattes, GC or meansquares, got {self.metric!r}.")
        if not (len(self.iterations) == len(self.shrink_factors) == len(self.smoothing_sigmas)):
            raise ValueError("iterations, shrink_factors and smoothing_sigmas need one entry per level.")
        if self.initial not in ("center-of-mass", "geometry", "identity"):
            raise ValueError(f"initial must be center-of-mass, geometry or identity, got {self.initial!r}.")


@dataclass
class RegistrationResult:
    warped: np.ndarray  # moving resampled onto the fixed grid (B-spline, clipped at 0)
    affine: np.ndarray  # the fixed grid's RAS affine
    fixed_to_moving_ras: np.ndarray  # 4x4: fixed world (RAS mm) -> moving world
    transform_file: Path  # the ANTs/ITK .mat (LPS, fixed -> moving)
    info: dict = field(default_factory=dict)


def _antialias(moving: np.ndarray, moving_affine: np.ndarray, target_spacing) -> tuple[np.ndarray, list[float]]:
    """Gaussian pre-filter of the moving image to the target voxel size: sigma = sqrt(t^2 - s^2) / 2.355 (FWHM match)
    per moving axis, with t the target's mean voxel edge (under rotation the matching target axis is not defined)."""
    s_m = spacing_from_affine(moving_affine)
    target = np.full(3, float(np.mean(target_spacing)))
    sigma_mm = np.sqrt(np.clip(target**2 - s_m**2, 0, None)) / 2.355
    sigma_vox = sigma_mm / s_m
    if not np.any(sigma_vox > 0.1):
        return moving, [0.0, 0.0, 0.0]
    return ndimage.gaussian_filter(moving, sigma_vox, mode="nearest"), sigma_mm.tolist()


def register_rigid(
    fixed: np.ndarray,
    fixed_affine: np.ndarray,
    moving: np.ndarray,
    moving_affine: np.ndarray,
    config: RegistrationConfig | None = None,
    workdir: str | os.PathLike | None = None,
    fixed_name: str = "fixed image",
    moving_name: str = "moving image",
) -> RegistrationResult:
    """Register ``moving`` (T2w) onto ``fixed`` (upsampled sodium) rigidly with mutual information and resample it.

    The transform file is written into ``workdir`` (default: a new temporary directory).
    """
    config = config or RegistrationConfig()
    t0 = time.perf_counter()
    overlap = check_overlap(fixed, fixed_affine, moving, moving_affine, fixed_name, moving_name)
    ants = import_ants(config.deterministic, config.seed)
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="reg_"))
    workdir.mkdir(parents=True, exist_ok=True)
    f_img = to_ants(fixed, fixed_affine, ants)
    m_img = to_ants(moving, moving_affine, ants)
    # antspyx's default start is ANTs' "[fixed,moving,1]" (centres of mass aligned); the other two are files
    kwargs = {}
    if config.initial != "center-of-mass":
        kwargs["initial_transform"] = _centre_transform(ants, f_img, m_img, workdir, config.initial == "identity")
    reg = ants.registration(
        fixed=f_img,
        moving=m_img,
        type_of_transform=config.transform,
        aff_metric=config.metric,
        aff_sampling=config.sampling_bins,
        aff_random_sampling_rate=config.sampling_rate,
        aff_iterations=tuple(config.iterations),
        aff_shrink_factors=tuple(config.shrink_factors),
        aff_smoothing_sigmas=tuple(config.smoothing_sigmas),
        outprefix=str(workdir / "reg_"),
        verbose=False,
        **kwargs,
    )
    t_reg = time.perf_counter() - t0
    tfile = Path(reg["fwdtransforms"][0])
    tx = ants.read_transform(str(tfile))
    params = np.asarray(tx.parameters, dtype=np.float64)
    centre = np.asarray(tx.fixed_parameters, dtype=np.float64)
    a = params[:9].reshape(3, 3)
    m_lps = np.eye(4)
    m_lps[:3, :3] = a
    m_lps[:3, 3] = params[9:12] + centre - a @ centre
    m_ras = lps_to_ras_matrix(m_lps)
    warped, aa_sigma = apply_rigid(moving, moving_affine, fixed.shape, fixed_affine, m_ras, config, ants=ants)
    if not np.any(warped > 0):
        raise InputError(
            f"{moving_name}: after registration the image does not overlap {fixed_name} (the resampled T2w is empty)."
        )
    info = {
        "config": asdict(config),
        "overlap_fraction_before": overlap,
        "fixed_to_moving_ras": m_ras.tolist(),
        "rotation_deg": rotation_angle_deg(m_ras),
        "euler_xyz_deg": euler_xyz_deg(m_ras).tolist(),
        "translation_mm": m_ras[:3, 3].tolist(),
        "antialias_sigma_mm": aa_sigma,
        "time_registration_s": t_reg,
        "time_total_s": time.perf_counter() - t0,
        "ants_threads": os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "default"),
    }
    log.info("registered %s -> %s: rotation %.2f deg, translation %s mm (%.1f s)", moving_name, fixed_name,
             info["rotation_deg"], np.round(m_ras[:3, 3], 2).tolist(), t_reg)
    return RegistrationResult(warped, np.asarray(fixed_affine, dtype=np.float64), m_ras, tfile, info)


def _centre_transform(ants, f_img, m_img, workdir: Path, identity: bool = False) -> str:
    """An ITK transform file aligning the geometric centres of the two images (LPS), or the identity."""
    def centre(img):
        lo = np.asarray(img.origin)
        d = np.asarray(img.direction) * np.asarray(img.spacing)[None, :]
        return lo + d @ ((np.asarray(img.shape) - 1) / 2)

    shift = np.zeros(3) if identity else centre(m_img) - centre(f_img)
    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3, translation=shift.tolist())
    path = workdir / "init_centre.mat"
    ants.write_transform(tx, str(path))
    return str(path)


def apply_rigid(
    moving: np.ndarray,
    moving_affine: np.ndarray,
    fixed_shape,
    fixed_affine: np.ndarray,
    fixed_to_moving_ras: np.ndarray,
    config: RegistrationConfig | None = None,
    ants=None,
) -> tuple[np.ndarray, list[float]]:
    """Resample ``moving`` onto the fixed grid through a fixed-to-moving RAS transform with ANTs (B-spline by default),
    after optional Gaussian anti-aliasing to the fixed voxel size; clipped at 0."""
    config = config or RegistrationConfig()
    ants = ants or import_ants(config.deterministic, config.seed)
    src = moving
    sigma = [0.0, 0.0, 0.0]
    if config.antialias:
        src, sigma = _antialias(np.asarray(moving, np.float32), moving_affine, spacing_from_affine(fixed_affine))
    m_lps = lps_to_ras_matrix(fixed_to_moving_ras)
    tx = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3, matrix=m_lps[:3, :3], translation=m_lps[:3, 3].tolist()
    )
    f_img = to_ants(np.zeros(tuple(fixed_shape), np.float32), fixed_affine, ants)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "xfm.mat")
        ants.write_transform(tx, path)
        out = ants.apply_transforms(
            fixed=f_img, moving=to_ants(src, moving_affine, ants), transformlist=[path],
            interpolator=config.interpolator, defaultvalue=0,
        )
    arr = np.clip(out.numpy().astype(np.float32), 0, None)
    return arr, sigma
