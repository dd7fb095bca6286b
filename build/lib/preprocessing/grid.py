"""Reconstruction grids, resampling between grids, and the ground-truth image at a reconstruction resolution.

Geometry convention of the NUFFT (shared by every backend in :mod:`preprocessing.nufft`): voxel ``n`` of an axis with
``N`` voxels sits at ``(n - N // 2) * spacing`` from the k-space phase reference point (the *isocentre*), i.e. the
forward model is ``y(k) = sum_n x[n] exp(-2 pi i k . r_n)`` with ``r_n = (n - N // 2) * spacing``. The affine of a
:class:`ReconGrid` is built so that voxel ``N // 2`` lands on ``isocenter_mm`` along ``direction`` (columns: the array
axes in RAS). World coordinates are RAS millimetres, as everywhere in the project (:mod:`monai_inr.coords`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from monai_inr.coords import fov_affine, spacing_from_affine, voxel_to_world, world_to_voxel
from monai_inr.errors import InputError

__all__ = [
    "PAPER_SHAPE",
    "PAPER_SPACING_MM",
    "ReconGrid",
    "paper_grid",
    "resample_volume",
    "fourier_resample",
    "reference_image",
    "nrmse",
]

#: Native sodium grid of the ArRFR paper (section 4.2.1): 56 x 56 x 38 at 4.8572 x 4.8572 x 4.75 mm
#: (272 x 272 x 180.5 mm).
PAPER_SHAPE: tuple[int, int, int] = (56, 56, 38)
PAPER_SPACING_MM: tuple[float, float, float] = (4.8572, 4.8572, 4.75)


@dataclass(frozen=True, eq=False)
class ReconGrid:
    """A Cartesian image grid for NUFFT reconstruction or simulation.

    Attributes:
        shape: voxels per array axis (i, j, k).
        spacing_mm: voxel size per array axis in mm.
        direction: 3x3 matrix whose columns are the array axes as RAS unit vectors (default identity: i->R, j->A, k->S).
        isocenter_mm: RAS position (mm) of the k-space phase reference; voxel ``N // 2`` sits there.
    """

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    isocenter_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self):
        shape = tuple(int(n) for n in self.shape)
        spacing = tuple(float(s) for s in self.spacing_mm)
        if len(shape) != 3 or min(shape) < 2:
            raise InputError(f"grid shape must be 3 axes of at least 2 voxels, got {shape}.")
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise InputError(f"grid spacing must be 3 positive numbers (mm), got {spacing}.")
        d = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        if not np.allclose(d.T @ d, np.eye(3), atol=1e-4):
            raise ValueError("grid direction must be an orthonormal 3x3 matrix (columns: array axes in RAS).")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing_mm", spacing)
        object.__setattr__(self, "direction", d)
        object.__setattr__(self, "isocenter_mm", tuple(float(v) for v in self.isocenter_mm))

    def __eq__(self, other) -> bool:
        return (isinstance(other, ReconGrid) and self.shape == other.shape
                and np.allclose(self.affine, other.affine, atol=1e-9))

    __hash__ = None

    @property
    def center_index(self) -> np.ndarray:
        """Voxel index of the isocentre on each axis (``N // 2``)."""
        return np.array([n // 2 for n in self.shape], dtype=np.float64)

    @property
    def affine(self) -> np.ndarray:
        """4x4 voxel-to-RAS affine (mm)."""
        a = np.eye(4)
        a[:3, :3] = self.direction * np.asarray(self.spacing_mm)[None, :]
        a[:3, 3] = np.asarray(self.isocenter_mm) - a[:3, :3] @ self.center_index
        return a

    @property
    def spacing_cm(self) -> np.ndarray:
        return np.asarray(self.spacing_mm) / 10.0

    @property
    def kmax_per_axis(self) -> np.ndarray:
        """Largest |k| (1/cm) representable on each axis: ``1 / (2 * spacing)`` (``|om| = pi``)."""
        return 1.0 / (2.0 * self.spacing_cm)

    @property
    def kmax(self) -> float:
        """Largest isotropic |k| (1/cm) the grid supports: set by the largest voxel edge."""
        return float(self.kmax_per_axis.min())

    @property
    def fov_mm(self) -> np.ndarray:
        return np.asarray(self.shape) * np.asarray(self.spacing_mm)

    def refined(self, factor: int = 2) -> "ReconGrid":
        """The grid ``factor`` times finer over the same k-space phase reference (voxel centres nest exactly)."""
        return ReconGrid(
            tuple(n * factor for n in self.shape),
            tuple(s / factor for s in self.spacing_mm),
            self.direction,
            self.isocenter_mm,
        )

    def omega(self, k_cm: np.ndarray) -> np.ndarray:
        """Dimensionless NUFFT frequencies ``om = 2 pi k spacing`` (radians) for k in 1/cm along the array axes."""
        return 2.0 * np.pi * np.asarray(k_cm, dtype=np.float64) * self.spacing_cm

    def to_dict(self) -> dict:
        return {
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing_mm),
            "direction": self.direction.tolist(),
            "isocenter_mm": list(self.isocenter_mm),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ReconGrid":
        return cls(
            tuple(d["shape"]),
            tuple(d["spacing_mm"]),
            np.asarray(d.get("direction", np.eye(3))),
            tuple(d.get("isocenter_mm", (0.0, 0.0, 0.0))),
        )


def paper_grid(isocenter_mm: Sequence[float] = (0.0, 0.0, 0.0), direction: np.ndarray | None = None) -> ReconGrid:
    """The ArRFR paper's native sodium grid, 56 x 56 x 38 at 4.8572 x 4.8572 x 4.75 mm."""
    return ReconGrid(PAPER_SHAPE, PAPER_SPACING_MM, np.eye(3) if direction is None else direction, tuple(isocenter_mm))


def resample_volume(
    volume: np.ndarray,
    affine_in: np.ndarray,
    shape_out: Sequence[int],
    affine_out: np.ndarray,
    order: int = 1,
    antialias: bool = True,
    cval: float = 0.0,
    world_transform: np.ndarray | None = None,
) -> np.ndarray:
    """Resample a volume onto another grid through world coordinates.

    Args:
        volume: input array on the grid of ``affine_in``.
        shape_out, affine_out: the output grid.
        order: spline order (0 nearest, 1 linear, 3 cubic).
        antialias: Gaussian pre-filter of the input when the output voxels are larger (sigma = sqrt(so^2 - si^2) / 2.355
            per input axis, in mm, with the output voxel size measured along that axis).
        world_transform: optional 4x4 map applied to the output's world points before the lookup (output world ->
            input world), e.g. a rigid motion.
    """
    vol = np.asarray(volume, dtype=np.float32)
    if antialias and order > 0:
        s_in = spacing_from_affine(affine_in)
        # output voxel extent along each input axis (axis-aligned approximation)
        dirs_in = affine_in[:3, :3] / s_in[None, :]
        m_out = affine_out[:3, :3]
        if world_transform is not None:
            m_out = world_transform[:3, :3] @ m_out
        extent = np.abs(dirs_in.T @ m_out).max(axis=1)
        sigma_mm = np.sqrt(np.clip(extent**2 - s_in**2, 0, None)) / 2.355
        sigma_vox = sigma_mm / s_in
        if np.any(sigma_vox > 0.1):
            vol = ndimage.gaussian_filter(vol, sigma=sigma_vox, mode="constant", cval=cval)
    idx = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape_out], indexing="ij"), axis=-1)
    xyz = voxel_to_world(idx.reshape(-1, 3), affine_out)
    if world_transform is not None:
        xyz = xyz @ world_transform[:3, :3].T + world_transform[:3, 3]
    ijk = world_to_voxel(xyz, affine_in)
    out = ndimage.map_coordinates(vol, ijk.T, order=order, mode="constant", cval=cval, prefilter=order > 1)
    return out.reshape(tuple(shape_out)).astype(np.float32)


def _centered_fft(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(x)))


def _centered_ifft(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(x)))


def fourier_resample(
    fine: np.ndarray, fine_grid: ReconGrid, grid: ReconGrid, support: str = "box"
) -> np.ndarray:
    """Band-limit an image on ``fine_grid`` to the k-space of ``grid`` and sample it at ``grid``'s voxel centres.

    Both grids must share direction and isocentre and nest (``fine_grid == grid.refined(f)``): the centred spectra
    then share their origin, and cropping the central ``grid.shape`` frequencies is the ideal Cartesian acquisition
    at the coarse resolution. ``support="sphere"`` additionally zeroes frequencies with ``|k| > grid.kmax``, the region
    a centre-out radial trajectory with that kmax actually samples.
    """
    fine = np.asarray(fine, dtype=np.float64)
    if support not in ("box", "sphere"):
        raise ValueError(f"support must be 'box' or 'sphere', got {support!r}.")
    spec = _centered_fft(fine)
    start = [nf // 2 - n // 2 for nf, n in zip(fine.shape, grid.shape)]
    crop = spec[tuple(slice(s, s + n) for s, n in zip(start, grid.shape))]
    if support == "sphere":
        k = np.meshgrid(
            *[(np.arange(n) - n // 2) / (n * s) for n, s in zip(grid.shape, grid.spacing_cm)], indexing="ij"
        )
        crop = crop * (np.sqrt(sum(kk**2 for kk in k)) <= grid.kmax + 1e-9)
    out = _centered_ifft(crop) * (np.prod(grid.shape) / np.prod(fine.shape))
    return np.real(out).astype(np.float32)


def reference_image(
    truth_fine: np.ndarray, fine_grid: ReconGrid, grid: ReconGrid, support: str = "box"
) -> np.ndarray:
    """Ground truth at the reconstruction resolution: :func:`fourier_resample` of the simulation-grid truth map."""
    return fourier_resample(truth_fine, fine_grid, grid, support=support)


def nrmse(image: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Normalised root-mean-square error ``||image - reference||_2 / ||reference||_2`` (optionally inside ``mask``)."""
    a = np.asarray(image, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if mask is not None:
        a, b = a[mask], b[mask]
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def upsampled_affine(affine: np.ndarray, shape: Sequence[int], factor: int = 2) -> np.ndarray:
    """Affine of the exact ``factor``x sub-grid over the same FOV (spacing / f; origin shifted -s/4 for f = 2)."""
    return fov_affine(affine, shape, [n * factor for n in shape])
