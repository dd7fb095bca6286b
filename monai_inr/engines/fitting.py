"""Subject-specific fitting of coordinate networks to two contrasts on different grids (multi-contrast INR).

McGinnis, Shit et al., "Multi-contrast MRI Super-resolution via Implicit Neural Representations", MICCAI 2023,
section 2 ("Implementation and Training"): the voxel centres of both low-resolution scans are mapped to scanner
(world) coordinates with their affines, normalised into one shared frame, and every voxel supervises only its own
contrast (eq. 1). This module owns that geometry and the pieces of the ignite fit:

* :class:`ContrastPair`: loads and checks the two NIfTI contrasts (and optional masks), min-max normalises each,
  builds the :class:`SharedFrame`, and provides the training samples, mask points and output grids;
* :class:`SharedFrame`: world <-> normalised coordinates (one isotropic scaling, axes of the reference contrast) and
  the isotropic output grid over the union field of view at a target spacing;
* :class:`CoordinateDataset`, :class:`ShuffledBatchSampler`, :class:`PrepareBatchCoordinates`,
  :class:`MultiContrastMSELoss`: data, batching and loss for a MONAI ``SupervisedTrainer``;
* :class:`MultiContrastGridInferer`, :class:`PrepareBatchTargetSpacing`, :class:`SaveContrastsd`: inference onto
  the union-FOV grid through a ``SupervisedEvaluator``;
* :func:`predict_points`, :func:`predict_on_grid`, :func:`resample_to_grid` (spline baselines on any grid through
  world coordinates).

The fit itself is defined once, by ``bundles/multi_contrast_inr/configs/train.json``; evaluations and benchmarks run
it through :func:`monai_inr.evaluation.bundle.fit_subject`.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import nibabel as nib
import numpy as np
import psutil
import torch
import torch.distributed as dist
from ignite.metrics import Average
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.engines import PrepareBatch
from monai.inferers import Inferer
from monai.transforms import MapTransform
from scipy import ndimage

from monai_inr import coords
from monai_inr.inferers.memory import GB, memory_budget_bytes
from monai_inr.io import InputError, check_volume, read_volume_header, save_nifti
from monai_inr.networks.utils import unwrap_network

__all__ = [
    "load_contrast",
    "foreground_mask",
    "SharedFrame",
    "ContrastPair",
    "CoordinateDataset",
    "ShuffledBatchSampler",
    "PrepareBatchCoordinates",
    "MultiContrastMSELoss",
    "LossPSNR",
    "MultiContrastGridInferer",
    "PrepareBatchTargetSpacing",
    "SaveContrastsd",
    "predict_points",
    "predict_on_grid",
    "resample_to_grid",
    "output_names",
    "check_fitted_geometry",
]

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------------ loading


def _header_affine(img: nib.spatialimages.SpatialImage, name: str) -> np.ndarray:
    """The scanner affine of a loaded image, with one-sentence errors for missing or degenerate geometry."""
    hdr = img.header
    if isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        if int(hdr["sform_code"]) == 0 and int(hdr["qform_code"]) == 0:
            raise InputError(
                f"{name}: no scanner geometry (the NIfTI qform and sform codes are both 0), so it cannot be placed in "
                f"world space next to the other contrast; write the image with its affine."
            )
    a = np.asarray(img.affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise InputError(f"{name}: the affine is missing or not finite.")
    spacing = coords.spacing_from_affine(a)
    if not (spacing > 1e-6).all() or abs(np.linalg.det(a[:3, :3])) < 1e-9 * float(np.prod(np.maximum(spacing, 1e-6))):
        raise InputError(
            f"{name}: zero voxel size or a degenerate affine (voxel size {np.round(spacing, 6).tolist()} mm)."
        )
    return a


def load_contrast(path: str | os.PathLike, name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load one 3D NIfTI contrast as ``(float32 array, 4x4 affine)``.

    Raises:
        InputError: missing/unreadable file, not 3D (e.g. a 4D series), NaN/Inf voxels, constant image, no scanner
            geometry (qform and sform codes 0), zero voxel size or a degenerate affine.
    """
    label = str(path) if name is None else f"{name} ({path})"
    p = Path(str(path))
    if not str(path).strip():
        raise InputError(f"{name or 'contrast'}: no file given; pass --{name or 'contrast1'} <file.nii.gz>.")
    if not p.is_file():
        raise InputError(f"{label}: file not found.")
    try:
        img = nib.load(str(p))
        data = np.asarray(img.dataobj)
    except Exception as e:  # nibabel raises many types for corrupt files
        raise InputError(f"{label}: not a readable NIfTI image ({type(e).__name__}).") from e
    arr = check_volume(data, name=label, ndim=3)
    return arr, _header_affine(img, label)


def foreground_mask(image: np.ndarray, threshold: float = 0.05, name: str = "image") -> np.ndarray:
    """Foreground of a [0, 1]-normalised image: voxels above ``threshold`` with holes filled (3D).

    Raises:
        InputError: nothing above the threshold.
    """
    m = ndimage.binary_fill_holes(np.asarray(image) > float(threshold))
    if not m.any():
        raise InputError(f"{name}: empty foreground (no voxel above {threshold:g} of the intensity range).")
    return m


def _load_mask(path: str | os.PathLike, shape: Sequence[int], affine: np.ndarray, name: str) -> np.ndarray:
    p = Path(str(path))
    if not p.is_file():
        raise InputError(f"{name} ({path}): file not found.")
    try:
        img = nib.load(str(p))
        data = np.asarray(img.dataobj)
    except Exception as e:
        raise InputError(f"{name} ({path}): not a readable NIfTI image ({type(e).__name__}).") from e
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if tuple(data.shape) != tuple(shape):
        raise InputError(f"{name} ({path}): shape {tuple(data.shape)} does not match its contrast's {tuple(shape)}.")
    if not np.allclose(np.asarray(img.affine), affine, atol=1e-3):
        raise InputError(f"{name} ({path}): its affine differs from its contrast's affine.")
    m = np.nan_to_num(np.asarray(data, dtype=np.float32)) > 0
    if not m.any():
        raise InputError(f"{name} ({path}): the mask is empty.")
    return m


# ------------------------------------------------------------------------------------------------------ frame


def _fov_corners(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """World coordinates ``(8, 3)`` of the outer corners (voxel edges) of a grid."""
    lo_hi = [(-0.5, n - 0.5) for n in shape]
    ijk = np.array([[lo_hi[0][a], lo_hi[1][b], lo_hi[2][c]] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    return np.asarray(coords.voxel_to_world(ijk, affine))


def _direction(affine: np.ndarray) -> np.ndarray:
    """Orthonormal direction matrix of an affine (polar factor of the column-normalised linear part)."""
    m = affine[:3, :3] / coords.spacing_from_affine(affine)[None, :]
    u, _, vt = np.linalg.svd(m)
    return u @ vt


@dataclass(frozen=True)
class SharedFrame:
    """The one normalised coordinate frame of a multi-contrast fit.

    Frame millimetres ``p = R^T x`` for world ``x`` (``R``: orthonormal directions of the reference contrast, so a
    flipped or oblique reference keeps its orientation); normalised coordinates ``n = (p - centre) / half_extent``
    with ONE scalar ``half_extent`` (half the longest side of the union field of view), so physical distances scale
    equally along every axis (upstream uses one scalar min/max as well) and the union FOV lies in [-1, 1]^3.

    Attributes:
        rotation: ``R`` (3 x 3, columns = frame axes in world coordinates).
        centre: centre of the union FOV box in frame mm.
        half_extent: mm per normalised unit.
        lower, upper: union FOV box (voxel edges of both grids) in frame mm.
    """

    rotation: np.ndarray
    centre: np.ndarray
    half_extent: float
    lower: np.ndarray
    upper: np.ndarray

    @classmethod
    def from_grids(cls, grids: Sequence[tuple[Sequence[int], np.ndarray]], reference: int = 0) -> SharedFrame:
        """Frame over the union FOV of ``grids`` = ``[(shape, affine), ...]``, oriented like ``grids[reference]``."""
        r = _direction(np.asarray(grids[reference][1], dtype=np.float64))
        pts = np.concatenate([_fov_corners(s, np.asarray(a, dtype=np.float64)) for s, a in grids]) @ r
        lower, upper = pts.min(axis=0), pts.max(axis=0)
        centre = (lower + upper) / 2
        half = float((upper - lower).max() / 2)
        return cls(r, centre, half, lower, upper)

    @classmethod
    def from_affine(cls, frame_affine: Any, fov_bounds: Any) -> SharedFrame:
        """Inverse of :attr:`affine` / :attr:`fov_bounds` (the buffers stored in a fitted network)."""
        def as_np(v):
            return np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, np.float64)

        a, b = as_np(frame_affine), as_np(fov_bounds)
        half = float(np.linalg.norm(a[:3, 0]))
        r = a[:3, :3] / half
        centre = r.T @ a[:3, 3]
        return cls(r, centre, half, centre + half * b[0], centre + half * b[1])

    @property
    def affine(self) -> np.ndarray:
        """``4 x 4``: normalised coordinates -> world mm."""
        a = np.eye(4)
        a[:3, :3] = self.rotation * self.half_extent
        a[:3, 3] = self.rotation @ self.centre
        return a

    @property
    def fov_bounds(self) -> np.ndarray:
        """``(2, 3)``: lower and upper corner of the union FOV in normalised coordinates."""
        return np.stack([(self.lower - self.centre) / self.half_extent, (self.upper - self.centre) / self.half_extent])

    def world_to_normalized(self, xyz: np.ndarray) -> np.ndarray:
        return ((np.asarray(xyz, np.float64) @ self.rotation) - self.centre) / self.half_extent

    def normalized_to_world(self, n: np.ndarray) -> np.ndarray:
        return (np.asarray(n, np.float64) * self.half_extent + self.centre) @ self.rotation.T

    def output_grid(self, target_spacing: float | Sequence[float]) -> tuple[tuple[int, ...], np.ndarray]:
        """Shape and affine of the grid over the union FOV at ``target_spacing`` mm (one number: isotropic).

        The spacing is exactly the target; ``round(extent / spacing)`` voxels per axis (at least 1), centred on the
        union FOV (so the grid's outer edges are within half a voxel of the FOV's), axes along the frame (the
        reference contrast's orientation).

        Raises:
            InputError: a spacing that is not positive and finite.
        """
        try:
            ts = np.asarray(coords.as_scale_tuple(target_spacing, 3, name="target_spacing"))
        except ValueError as e:
            raise InputError(str(e)) from None
        extent = self.upper - self.lower
        shape = tuple(max(1, int(round(float(e) / float(s)))) for e, s in zip(extent, ts))
        first = self.centre - (np.asarray(shape) - 1) / 2.0 * ts
        a = np.eye(4)
        a[:3, :3] = self.rotation * ts[None, :]
        a[:3, 3] = self.rotation @ first
        return shape, a


def _grid_points(frame: SharedFrame, shape: Sequence[int], affine: np.ndarray, start: int, stop: int) -> torch.Tensor:
    """Normalised frame coordinates (float32) of the flat voxel indices ``[start, stop)`` of a grid."""
    flat = np.arange(start, stop, dtype=np.int64)
    ijk = np.stack(np.unravel_index(flat, tuple(shape)), axis=-1).astype(np.float64)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    return torch.from_numpy(frame.world_to_normalized(world).astype(np.float32))


def _nearest_mask_lookup(mask: np.ndarray, affine: np.ndarray, world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inside FOV, mask value) of ``mask`` at world points (nearest voxel)."""
    ijk = np.asarray(coords.world_to_voxel(world, affine))
    idx = np.rint(ijk).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(mask.shape)), axis=1)
    val = np.zeros(len(world), dtype=bool)
    val[inside] = mask[tuple(idx[inside].T)]
    return inside, val


# ------------------------------------------------------------------------------------------------------ subject


class ContrastPair:
    """Two contrasts of one subject on their own grids, ready for a joint fit.

    Loading checks every input (:func:`load_contrast`), min-max normalises each contrast to [0, 1] (paper), takes
    the given foreground masks or computes them (:func:`foreground_mask`), checks that the fields of view overlap in
    world space, and builds the :class:`SharedFrame` (oriented like the first contrast).

    Args:
        contrast1, contrast2: NIfTI files (rigidly aligned in scanner space).
        mask1, mask2: optional foreground masks on each contrast's grid (``None``/empty: computed).
        mask_threshold: threshold of the computed masks on the [0, 1] intensities.
        names: contrast names used in logs and output files (default: from the file names).
        reference: which contrast defines the frame's orientation.

    Raises:
        InputError: any bad input (see :func:`load_contrast`), masks of the wrong shape, or fields of view that do
            not overlap.
    """

    def __init__(
        self,
        contrast1: str | os.PathLike,
        contrast2: str | os.PathLike,
        mask1: str | os.PathLike | None = None,
        mask2: str | os.PathLike | None = None,
        mask_threshold: float = 0.05,
        names: Sequence[str] | None = None,
        reference: int = 0,
    ) -> None:
        self.paths = [str(contrast1), str(contrast2)]
        self.names = list(names) if names else output_names(self.paths)
        self.images: list[np.ndarray] = []
        self.affines: list[np.ndarray] = []
        self.intensity_range = np.zeros((2, 2))
        for c, (path, arg) in enumerate(zip(self.paths, ("contrast1", "contrast2"))):
            arr, aff = load_contrast(path, arg)
            lo, hi = float(arr.min()), float(arr.max())
            self.images.append(((arr.astype(np.float64) - lo) / (hi - lo)).astype(np.float32))
            self.affines.append(aff)
            self.intensity_range[c] = (lo, hi)
        self.masks: list[np.ndarray] = []
        for c, (m, arg) in enumerate(zip((mask1, mask2), ("mask1", "mask2"))):
            if m is not None and str(m).strip():
                self.masks.append(_load_mask(m, self.images[c].shape, self.affines[c], arg))
            else:
                name = f"contrast{c + 1} ({self.paths[c]})"
                self.masks.append(foreground_mask(self.images[c], mask_threshold, name=name))
        self.overlap = self._check_overlap()
        self.frame = SharedFrame.from_grids([(im.shape, a) for im, a in zip(self.images, self.affines)], reference)

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(im.shape) for im in self.images]

    @property
    def spacings(self) -> list[np.ndarray]:
        return [coords.spacing_from_affine(a) for a in self.affines]

    def _check_overlap(self) -> float:
        """Fraction of contrast 2's voxel centres inside contrast 1's FOV (subsampled); error when zero."""
        shape2, a2 = self.images[1].shape, self.affines[1]
        frac = coords.fraction_inside_fov(shape2, a2, self.images[0].shape, self.affines[0])
        if frac == 0.0:
            raise InputError(
                f"contrast1 ({self.paths[0]}) and contrast2 ({self.paths[1]}) do not overlap in scanner space: no "
                f"voxel of one lies inside the other's field of view; give two aligned scans of the same subject."
            )
        return frac

    # ------------------------------------------------------------------ samples
    def coordinates(self, c: int) -> torch.Tensor:
        """Normalised frame coordinates ``(N_c, 3)`` (float32) of every voxel centre of contrast ``c``."""
        shape, a = self.images[c].shape, self.affines[c]
        return _grid_points(self.frame, shape, a, 0, int(np.prod(shape)))

    def dataset(self, contrasts: Sequence[int] | None = None) -> CoordinateDataset:
        """Every voxel of the selected contrasts as a training sample: ``coord`` (3) and ``target`` (one column per
        selected contrast; NaN where the sample belongs to another contrast, so each voxel supervises only its own
        contrast)."""
        sel = list(range(2)) if contrasts is None else [int(c) for c in contrasts]
        xs, ts = [], []
        for j, c in enumerate(sel):
            x = self.coordinates(c)
            t = torch.full((x.shape[0], len(sel)), float("nan"))
            t[:, j] = torch.from_numpy(self.images[c].reshape(-1))
            xs.append(x)
            ts.append(t)
        return CoordinateDataset(torch.cat(xs), torch.cat(ts))

    def geometry(self, contrasts: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """The buffers of :meth:`monai_inr.networks.nets.MultiContrastINR.set_geometry`."""
        sel = list(range(2)) if contrasts is None else [int(c) for c in contrasts]
        return {
            "frame_affine": self.frame.affine,
            "fov_bounds": self.frame.fov_bounds,
            "intensity_range": self.intensity_range[sel],
        }

    def configure(self, network: torch.nn.Module, contrasts: Sequence[int] | None = None) -> torch.nn.Module:
        """Store :meth:`geometry` in ``network`` (unwrapping DDP) and return it."""
        target = unwrap_network(network)
        target.set_geometry(**self.geometry(contrasts))
        return network

    def in_mask(self, world: np.ndarray) -> np.ndarray:
        """Foreground at world points: inside the mask of every contrast that covers the point (nearest voxel)."""
        keep = np.ones(len(world), dtype=bool)
        covered = np.zeros(len(world), dtype=bool)
        for m, a in zip(self.masks, self.affines):
            inside, val = _nearest_mask_lookup(m, a, world)
            keep &= ~inside | val
            covered |= inside
        return keep & covered

    def mask_points(self, max_points: int = 65536, spacing: float | None = None, seed: int = 0) -> torch.Tensor:
        """Up to ``max_points`` normalised points (float32) inside the foreground on an isotropic grid of the union
        FOV (``spacing``: default the finest voxel size of either contrast, coarsened to keep <= 2**22 candidates),
        drawn with a fixed seed: the evaluation set of the MI early stopping."""
        s = float(spacing) if spacing else float(min(sp.min() for sp in self.spacings))
        extent = self.frame.upper - self.frame.lower
        while np.prod(np.maximum(1, np.round(extent / s))) > 2**22:
            s *= 1.25
        shape, a = self.frame.output_grid(s)
        n = int(np.prod(shape))
        flat = np.arange(n, dtype=np.int64)
        ijk = np.stack(np.unravel_index(flat, shape), axis=-1).astype(np.float64)
        world = ijk @ a[:3, :3].T + a[:3, 3]
        keep = self.in_mask(world)
        world = world[keep]
        if len(world) == 0:
            raise InputError("the foreground masks of the two contrasts do not overlap; check the masks or images.")
        if len(world) > max_points:
            world = world[np.sort(np.random.default_rng(seed).choice(len(world), int(max_points), replace=False))]
        return torch.from_numpy(self.frame.world_to_normalized(world).astype(np.float32))

    def output_grid(self, target_spacing: float | Sequence[float]) -> tuple[tuple[int, ...], np.ndarray]:
        """Isotropic grid over the union FOV (:meth:`SharedFrame.output_grid`)."""
        return self.frame.output_grid(target_spacing)

    def describe(self) -> str:
        parts = [
            f"{n}: {s} voxels of {np.round(sp, 3).tolist()} mm"
            for n, s, sp in zip(self.names, self.shapes, self.spacings)
        ]
        ext = np.round(self.frame.upper - self.frame.lower, 2).tolist()
        return "; ".join(parts) + f"; union FOV {ext} mm, overlap {self.overlap:.0%}"


def output_names(paths: Sequence[str | os.PathLike], defaults: Sequence[str] = ("contrast1", "contrast2")) -> list[str]:
    """File stems of the contrasts (``sub-01_T1w.nii.gz`` -> ``sub-01_T1w``); ``defaults`` for empty paths, made
    unique when two stems coincide."""
    names = []
    for p, d in zip(paths, defaults):
        name = Path(str(p)).name if p and str(p).strip() else d
        for suffix in (".nii.gz", ".nii"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        names.append(name or d)
    if len(set(names)) < len(names):
        names = [f"{n}_{d}" for n, d in zip(names, defaults)]
    return names


# ------------------------------------------------------------------------------------------------------ training data


class CoordinateDataset(torch.utils.data.Dataset):
    """Coordinates and targets held as two tensors; indexing with an index tensor returns a whole batch.

    Use with ``DataLoader(dataset, batch_size=None, sampler=ShuffledBatchSampler(...))``: each sampled element is a
    tensor of indices, so a batch is two tensor gathers instead of collating thousands of dictionaries.

    Items: ``{"coord": (..., 3), "target": (..., C)}`` with NaN targets marking unobserved contrasts.
    """

    def __init__(self, coord: torch.Tensor, target: torch.Tensor) -> None:
        if coord.shape[0] != target.shape[0]:
            raise ValueError(f"coord and target lengths differ: {coord.shape[0]} vs {target.shape[0]}.")
        self.coord = coord.float().contiguous()
        self.target = target.float().contiguous()

    def __len__(self) -> int:
        return int(self.coord.shape[0])

    def __getitem__(self, index: Any) -> dict[str, torch.Tensor]:
        if isinstance(index, (list, tuple, np.ndarray)):
            index = torch.as_tensor(index, dtype=torch.int64)
        return {"coord": self.coord[index], "target": self.target[index]}


class ShuffledBatchSampler(torch.utils.data.Sampler):
    """Index batches (``LongTensor``) over a new random permutation each pass; DDP-aware.

    With ``torch.distributed`` initialised, every rank takes an interleaved share of the same permutation (padded to
    equal length), so ranks see disjoint samples and the same number of batches.

    Args:
        num_samples: dataset length.
        batch_size: samples per batch (paper: 1000).
        shuffle: new permutation each epoch (seeded by ``seed`` and the pass number).
        drop_last: drop the last incomplete batch.
    """

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False):
        if int(num_samples) < 1 or int(batch_size) < 1:
            raise ValueError(f"num_samples and batch_size must be positive, got {num_samples}, {batch_size}.")
        self.num_samples = int(num_samples)
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def _rank_world(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _per_rank(self) -> int:
        return int(math.ceil(self.num_samples / self._rank_world()[1]))

    def __len__(self) -> int:
        n = self._per_rank()
        return n // self.batch_size if self.drop_last else int(math.ceil(n / self.batch_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        rank, world = self._rank_world()
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            perm = torch.randperm(self.num_samples, generator=g)
        else:
            perm = torch.arange(self.num_samples)
        self.epoch += 1
        if world > 1:
            total = self._per_rank() * world
            if total > self.num_samples:
                perm = torch.cat([perm, perm[: total - self.num_samples]])
            perm = perm[rank::world]
        for i in range(len(self)):
            yield perm[i * self.batch_size : (i + 1) * self.batch_size]


class PrepareBatchCoordinates(PrepareBatch):
    """``(batch[coord_key], batch[target_key])`` on the device: network input and loss target."""

    def __init__(self, coord_key: str = "coord", target_key: str = "target") -> None:
        self.coord_key = coord_key
        self.target_key = target_key

    def __call__(self, batchdata: dict[str, torch.Tensor], device=None, non_blocking: bool = False, **kwargs):
        x = batchdata[self.coord_key].to(device=device, non_blocking=non_blocking)
        y = batchdata[self.target_key].to(device=device, non_blocking=non_blocking)
        return x, y


class MultiContrastMSELoss(torch.nn.Module):
    """Eq. 1 of McGinnis et al.: ``sum_c w_c * MSE over the samples observed in contrast c``.

    ``target`` ``(..., C)`` holds NaN where a sample has no value for that contrast; those entries contribute
    neither to the loss nor to the gradient. Per contrast the squared errors are averaged over its observed samples
    in the batch (upstream: MSE per contrast); a contrast without samples in the batch contributes 0.

    Args:
        weights: ``(alpha, beta, ...)``, one per contrast (paper: 1, 1); ``None`` = all 1.
    """

    def __init__(self, weights: Sequence[float] | None = None) -> None:
        super().__init__()
        self.weights = None if weights is None else [float(w) for w in weights]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape.")
        c = pred.shape[-1]
        w = self.weights or [1.0] * c
        if len(w) != c:
            raise ValueError(f"{len(w)} loss weights for {c} contrasts.")
        observed = ~torch.isnan(target)
        t = torch.where(observed, target, torch.zeros_like(target))  # no NaN reaches the graph
        sq = torch.where(observed, (pred.float() - t) ** 2, torch.zeros_like(t))
        count = observed.reshape(-1, c).sum(0)
        per = sq.reshape(-1, c).sum(0) / count.clamp(min=1)
        return (per * torch.as_tensor(w, dtype=per.dtype, device=per.device)).sum()


class LossPSNR(Average):
    """Ignite metric: the epoch's mean training loss as a PSNR, ``-10 log10(mean loss / num_contrasts)`` dB.

    With unit loss weights and [0, 1] intensities this is the PSNR of the fit to the training voxels (of the MSE
    averaged over the contrasts); it reads better in logs than an MSE of 1e-5.
    """

    def __init__(self, num_contrasts: int = 2, output_transform=None, device: str | torch.device = "cpu") -> None:
        self.num_contrasts = int(num_contrasts)
        super().__init__(output_transform=output_transform or (lambda out: out["loss"].detach()), device=device)

    def compute(self) -> float:
        v = float(super().compute())
        return -10.0 * math.log10(max(v / self.num_contrasts, 1e-12))


# ------------------------------------------------------------------------------------------------------ prediction


def predict_points(
    network: torch.nn.Module, points: torch.Tensor, chunk_size: int = 65536, amp_bf16: bool = False
) -> torch.Tensor:
    """Network output ``(P, C)`` (float32, CPU) at normalised points ``(P, 3)``, chunked, in eval mode."""
    net = unwrap_network(network)
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    outs = []
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp_bf16):
            for s in range(0, points.shape[0], int(chunk_size)):
                outs.append(net.query(points[s : s + int(chunk_size)].to(device)).float().cpu())
    finally:
        net.train(was_training)
    return torch.cat(outs) if outs else torch.zeros(0, getattr(net, "out_channels", 1))


def predict_on_grid(
    network: torch.nn.Module,
    frame: SharedFrame,
    shape: Sequence[int],
    affine: np.ndarray,
    chunk_size: int = 65536,
    amp_bf16: bool = False,
) -> torch.Tensor:
    """Network output ``(C, *shape)`` on a grid given by ``shape`` and world ``affine``, through ``frame``."""
    net = unwrap_network(network)
    device = next(net.parameters()).device
    n = int(np.prod(shape))
    out = torch.empty((getattr(net, "out_channels", 1), n), dtype=torch.float32)
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp_bf16):
            for s in range(0, n, int(chunk_size)):
                e = min(n, s + int(chunk_size))
                pts = _grid_points(frame, shape, np.asarray(affine, np.float64), s, e).to(device)
                out[:, s:e] = net.query(pts).float().T.cpu()
    finally:
        net.train(was_training)
    return out.reshape(-1, *[int(v) for v in shape])


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
    m = np.linalg.solve(np.asarray(affine, np.float64), np.asarray(out_affine, np.float64))  # out voxel -> in voxel
    n = int(np.prod(out_shape))
    out = np.empty(n, dtype=np.float32)
    for s in range(0, n, int(chunk_size)):
        flat = np.arange(s, min(n, s + int(chunk_size)), dtype=np.int64)
        ijk = np.stack(np.unravel_index(flat, tuple(out_shape)), axis=0).astype(np.float64)
        src = m[:3, :3] @ ijk + m[:3, 3:4]
        out[s : s + flat.size] = ndimage.map_coordinates(coeff, src, order=order, mode=mode, prefilter=False)
    return out.reshape(tuple(out_shape))


# ------------------------------------------------------------------------------------------------------ inference


class MultiContrastGridInferer(Inferer):
    """Sample a fitted multi-contrast INR on the isotropic grid over the union FOV at a target spacing.

    The grid comes from the geometry stored in the network (:class:`SharedFrame` of its ``frame_affine`` and
    ``fov_bounds`` buffers, :meth:`SharedFrame.output_grid`): exact target spacing, centred on the union FOV, axes of
    the reference contrast. Queries run in chunks of ``chunk_size`` under ``torch.inference_mode``.

    Call ``inferer(inputs, network)``: ``inputs`` ``(1, 3)`` (or ``(3,)``) holds the target spacing in mm
    (:class:`PrepareBatchTargetSpacing`); ``target_spacing`` given to the constructor is used when ``inputs`` is
    ``None``. Returns a MetaTensor ``(1, C, *shape)`` whose affine is the grid's and whose meta holds
    ``intensity_range`` (``C x 2``) for :class:`SaveContrastsd`.

    Raises:
        InputError: a non-positive target spacing, or an output (plus working memory) beyond ``memory_budget_gb``
            (default: 6 GB or 80 % of the available memory), before any work.
    """

    def __init__(
        self,
        target_spacing: float | Sequence[float] | None = None,
        chunk_size: int = 65536,
        amp_bf16: bool = False,
        memory_budget_gb: float | None = None,
    ) -> None:
        super().__init__()
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}.")
        self.target_spacing = target_spacing
        self.chunk_size = int(chunk_size)
        self.amp_bf16 = bool(amp_bf16)
        self.memory_budget_gb = memory_budget_gb

    def plan(self, network: torch.nn.Module, target_spacing: Any) -> tuple[SharedFrame, tuple[int, ...], np.ndarray]:
        """The grid for ``target_spacing``; raises :class:`InputError` when it does not fit the memory budget."""
        net = unwrap_network(network)
        frame = SharedFrame.from_affine(net.frame_affine, net.fov_bounds)
        shape, affine = frame.output_grid(target_spacing)
        n = float(np.prod(shape))
        c = int(getattr(net, "out_channels", 1))
        chunk = min(self.chunk_size, n)
        need = (
            psutil.Process().memory_info().rss
            + 4.0 * c * n  # the output
            + 4.0 * c * n  # its copy on saving
            + 1.25 * 4.0 * chunk * float(getattr(net, "decode_workspace_channels", 2048))
        )
        budget = memory_budget_bytes(self.memory_budget_gb)
        if need > budget:
            raise InputError(
                f"The output grid {'x'.join(map(str, shape))} at {target_spacing} mm ({c} contrasts) needs about "
                f"{need / GB:.2f} GB but the memory budget is {budget / GB:.2f} GB; use a coarser --target_spacing "
                f"or raise memory_budget_gb."
            )
        return frame, shape, affine

    def __call__(self, inputs: torch.Tensor | None, network: torch.nn.Module, *args: Any, **kwargs: Any) -> MetaTensor:
        if inputs is None:
            spacing = self.target_spacing
        else:
            spacing = [float(v) for v in torch.as_tensor(inputs).detach().cpu().reshape(-1, 3)[0]]
        if spacing is None:
            raise InputError("no target spacing given; pass --target_spacing <mm>.")
        frame, shape, affine = self.plan(network, spacing)
        values = predict_on_grid(network, frame, shape, affine, self.chunk_size, self.amp_bf16)
        net = unwrap_network(network)
        meta = {
            "intensity_range": net.intensity_range.detach().cpu().numpy().copy(),
            "target_spacing": np.asarray(spacing, dtype=np.float64),
            "spatial_shape": np.asarray(shape),
        }
        return MetaTensor(values[None], affine=torch.as_tensor(affine, dtype=torch.float64), meta=meta)


class PrepareBatchTargetSpacing(PrepareBatch):
    """Inference batches: ``inputs`` = the requested target spacing ``(1, 3)`` from ``batch[key]``, no label."""

    def __init__(self, key: str = "target_spacing") -> None:
        self.key = key

    def __call__(self, batchdata: Mapping[str, Any], device=None, non_blocking: bool = False, **kwargs):
        try:
            ts = coords.as_scale_tuple(batchdata[self.key], 3, name="target_spacing")
        except ValueError as e:
            raise InputError(str(e)) from None
        return torch.tensor([ts], dtype=torch.float64), None


class SaveContrastsd(MapTransform):
    """Write each channel of ``keys`` (``(C, *spatial)`` MetaTensor) as its own NIfTI with the tensor's affine.

    Channel ``c`` goes to ``<output_dir>/<names[c]>_<postfix><ext>``, clipped to [0, 1] (``clip``) and mapped back to
    the contrast's intensity range stored in ``meta["intensity_range"]`` (``restore_intensity``). Files are written
    atomically (temporary name, then rename) by :func:`monai_inr.io.save_nifti`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        names: Sequence[str] = ("contrast1", "contrast2"),
        output_postfix: str = "sr",
        output_ext: str = ".nii.gz",
        clip: bool = True,
        restore_intensity: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.names = list(names)
        self.output_postfix = output_postfix
        self.output_ext = output_ext
        self.clip = bool(clip)
        self.restore_intensity = bool(restore_intensity)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if img.ndim == 5 and img.shape[0] == 1:
                img = img[0]
            if img.shape[0] > len(self.names):
                raise ValueError(f"{key}: {img.shape[0]} channels but only {len(self.names)} output names.")
            affine = np.asarray(img.affine.detach().cpu() if isinstance(img.affine, torch.Tensor) else img.affine)
            rng = np.asarray(img.meta.get("intensity_range", [[0.0, 1.0]] * img.shape[0]), dtype=np.float64)
            saved = []
            for c in range(img.shape[0]):
                v = img[c].detach().float().cpu().numpy()
                if self.clip:
                    v = np.clip(v, 0.0, 1.0)
                if self.restore_intensity:
                    v = v * (rng[c, 1] - rng[c, 0]) + rng[c, 0]
                path = self.output_dir / f"{self.names[c]}_{self.output_postfix}{self.output_ext}"
                saved.append(str(save_nifti(v, affine, path)))
            img.meta["saved_to"] = saved
        return d


def check_fitted_geometry(
    network: torch.nn.Module, contrast1: str | None, contrast2: str | None, atol_mm: float = 1e-2
) -> None:
    """When the contrasts are given at inference, check they are the images the checkpoint was fitted to (same
    union FOV and frame); only headers are read.

    Raises:
        InputError: unreadable headers or a different geometry.
    """
    if not (contrast1 and str(contrast1).strip() and contrast2 and str(contrast2).strip()):
        return
    grids = []
    for p, arg in ((contrast1, "contrast1"), (contrast2, "contrast2")):
        shape, _ = read_volume_header(p, f"{arg} ({p})")
        grids.append((shape, _header_affine(nib.load(str(p)), f"{arg} ({p})")))
    expected = SharedFrame.from_grids(grids)
    net = unwrap_network(network)
    stored = SharedFrame.from_affine(net.frame_affine, net.fov_bounds)
    same = all(
        np.allclose(a, b, atol=atol_mm)
        for a, b in ((expected.affine, stored.affine), (expected.lower, stored.lower), (expected.upper, stored.upper))
    )
    if not same:
        raise InputError(
            f"the checkpoint was fitted to other images: the field of view of {contrast1} and {contrast2} differs "
            f"from the one stored in the checkpoint."
        )
