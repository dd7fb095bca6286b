"""Coordinate-based training data of a subject-specific fit (multi-contrast INR).

McGinnis, Shit et al., "Multi-contrast MRI Super-resolution via Implicit Neural Representations", MICCAI 2023,
section 2 ("Implementation and Training"): every voxel of both low-resolution contrasts becomes one sample at its
normalised position in the shared frame (:class:`~monai_inr.coords.SharedFrame`) and supervises only its own contrast
(eq. 1).

* :class:`ContrastPair`: loads and checks the two contrasts (and optional masks), min-max normalises each, builds the
  shared frame, and provides the training samples, mask points and output grids;
* :class:`CoordinateDataset`, :class:`ShuffledBatchSampler`: index-batched samples for a MONAI ``SupervisedTrainer``.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from monai_inr import coords
from monai_inr.coords import SharedFrame
from monai_inr.errors import InputError
from monai_inr.io import foreground_mask, load_mask, load_volume, output_names
from monai_inr.networks.utils import unwrap_network

__all__ = ["ContrastPair", "CoordinateDataset", "ShuffledBatchSampler"]


class ContrastPair:
    """Two contrasts of one subject on their own grids, ready for a joint fit.

    Loading checks every input (:func:`monai_inr.io.load_volume` with the scanner geometry), min-max normalises each contrast to [0, 1] (paper), takes
    the given foreground masks or computes them (:func:`monai_inr.io.foreground_mask`), checks that the fields of view overlap in
    world space, and builds the :class:`~monai_inr.coords.SharedFrame` (oriented like the first contrast).

    Args:
        contrast1, contrast2: NIfTI files (rigidly aligned in scanner space).
        mask1, mask2: optional foreground masks on each contrast's grid (``None``/empty: computed).
        mask_threshold: threshold of the computed masks on the [0, 1] intensities.
        names: contrast names used in logs and output files (default: from the file names).
        reference: which contrast defines the frame's orientation.

    Raises:
        InputError: any bad input (see :func:`monai_inr.io.load_volume`), masks of the wrong shape, or fields of view that do
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
            arr, aff = load_volume(path, name=arg, require_geometry=True)
            lo, hi = float(arr.min()), float(arr.max())
            self.images.append(((arr.astype(np.float64) - lo) / (hi - lo)).astype(np.float32))
            self.affines.append(aff)
            self.intensity_range[c] = (lo, hi)
        self.masks: list[np.ndarray] = []
        for c, (m, arg) in enumerate(zip((mask1, mask2), ("mask1", "mask2"))):
            if m is not None and str(m).strip():
                self.masks.append(load_mask(m, self.images[c].shape, self.affines[c], arg))
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

    def acquired_sampling(self, contrasts: Sequence[int] | None = None) -> np.ndarray:
        """The finest sampling acquired along each axis of the shared frame by the selected contrasts (default both),
        in mm ``(3,)`` (:meth:`~monai_inr.coords.SharedFrame.sampling_along_axes`): the in-plane spacing along an axis
        that one of them samples in-plane, the slice spacing only where all of them are thick along it."""
        sel = list(range(len(self.affines))) if contrasts is None else [int(c) for c in contrasts]
        return np.min([self.frame.sampling_along_axes(self.affines[c]) for c in sel], axis=0)

    def acquired_resolution(self, contrasts: Sequence[int] | None = None) -> list[int]:
        """Hash-grid cells across ``[-1, 1]`` per frame axis whose finest cell matches :meth:`acquired_sampling` of
        the fitted contrasts: the finest level then has no vertices between acquired samples, which only the
        network's smoothness would constrain (through-plane grain). Measured on a realistic 2 mm pair (4x thick
        slices, SNR 20): see the bundle docs (``bundles/multi_contrast_inr/docs/README.md``, Performance)."""
        return self.frame.cells_across(self.acquired_sampling(contrasts))

    def _check_overlap(self) -> float:
        """Fraction of contrast 2's voxel centres inside contrast 1's FOV (subsampled); error when zero."""
        names = [f"contrast{c + 1} ({p})" for c, p in enumerate(self.paths)]
        return coords.check_overlap(self.images[0].shape, self.affines[0], self.images[1].shape, self.affines[1], names)

    # ------------------------------------------------------------------ samples
    def coordinates(self, c: int) -> torch.Tensor:
        """Normalised frame coordinates ``(N_c, 3)`` (float32) of every voxel centre of contrast ``c``."""
        shape, a = self.images[c].shape, self.affines[c]
        return coords.frame_points(self.frame, shape, a, 0, int(np.prod(shape)))

    def slice_profile_vectors(self, min_anisotropy: float = 1.25) -> list[np.ndarray]:
        """Per contrast, its thick (slice) axis as a vector of the shared frame's normalised coordinates, one voxel
        (slice thickness = slice spacing) long; zero when the contrast has no axis at least ``min_anisotropy`` times
        coarser than its finest (no slice profile to integrate over)."""
        vectors = []
        for shape, a, sp in zip(self.shapes, self.affines, self.spacings):
            axis = int(np.argmax(sp))
            if sp[axis] < min_anisotropy * float(sp.min()):
                vectors.append(np.zeros(3))
                continue
            centre = a[:3, :3] @ ((np.asarray(shape, np.float64) - 1) / 2) + a[:3, 3]
            ends = np.stack([centre - a[:3, axis] / 2, centre + a[:3, axis] / 2])
            n = self.frame.world_to_normalized(ends)
            vectors.append(n[1] - n[0])
        return vectors

    def dataset(self, contrasts: Sequence[int] | None = None, slice_profile: bool = False) -> CoordinateDataset:
        """Every voxel of the selected contrasts as a training sample: ``coord`` (3) and ``target`` (one column per
        selected contrast; NaN where the sample belongs to another contrast, so each voxel supervises only its own
        contrast); with ``slice_profile`` also ``profile`` (3), the sample's contrast's
        :meth:`slice_profile_vectors` entry, for the thick-slice forward model
        (:class:`~monai_inr.inferers.SliceProfileInferer`)."""
        sel = list(range(2)) if contrasts is None else [int(c) for c in contrasts]
        vectors = self.slice_profile_vectors() if slice_profile else None
        xs, ts, ps = [], [], []
        for j, c in enumerate(sel):
            x = self.coordinates(c)
            t = torch.full((x.shape[0], len(sel)), float("nan"))
            t[:, j] = torch.from_numpy(self.images[c].reshape(-1))
            xs.append(x)
            ts.append(t)
            if vectors is not None:
                ps.append(torch.as_tensor(vectors[c], dtype=torch.float32).expand(x.shape[0], 3))
        extra = {"profile": torch.cat(ps)} if vectors is not None else None
        return CoordinateDataset(torch.cat(xs), torch.cat(ts), extra)

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
            inside, val = coords.nearest_mask_lookup(m, a, world)
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
        """Isotropic grid over the union FOV (:meth:`~monai_inr.coords.SharedFrame.output_grid`)."""
        return self.frame.output_grid(target_spacing)

    def describe(self) -> str:
        parts = [
            f"{n}: {s} voxels of {np.round(sp, 3).tolist()} mm"
            for n, s, sp in zip(self.names, self.shapes, self.spacings)
        ]
        ext = np.round(self.frame.upper - self.frame.lower, 2).tolist()
        return "; ".join(parts) + f"; union FOV {ext} mm, overlap {self.overlap:.0%}"


# ------------------------------------------------------------------------------------------------------ training data


class CoordinateDataset(torch.utils.data.Dataset):
    """Coordinates and targets held as two tensors; indexing with an index tensor returns a whole batch.

    Use with ``DataLoader(dataset, batch_size=None, sampler=ShuffledBatchSampler(...))``: each sampled element is a
    tensor of indices, so a batch is two tensor gathers instead of collating thousands of dictionaries.

    Items: ``{"coord": (..., 3), "target": (..., C)}`` with NaN targets marking unobserved contrasts, plus one entry
    per ``extra`` tensor (e.g. ``"profile"``: each sample's slice-profile vector).
    """

    def __init__(self, coord: torch.Tensor, target: torch.Tensor, extra: dict[str, torch.Tensor] | None = None) -> None:
        if coord.shape[0] != target.shape[0]:
            raise ValueError(f"coord and target lengths differ: {coord.shape[0]} vs {target.shape[0]}.")
        self.coord = coord.float().contiguous()
        self.target = target.float().contiguous()
        self.extra = {k: v.float().contiguous() for k, v in (extra or {}).items()}
        for k, v in self.extra.items():
            if v.shape[0] != coord.shape[0]:
                raise ValueError(f"{k} has {v.shape[0]} rows but there are {coord.shape[0]} coordinates.")

    def __len__(self) -> int:
        return int(self.coord.shape[0])

    def __getitem__(self, index: Any) -> dict[str, torch.Tensor]:
        if isinstance(index, (list, tuple, np.ndarray)):
            index = torch.as_tensor(index, dtype=torch.int64)
        return {"coord": self.coord[index], "target": self.target[index], **{k: v[index] for k, v in self.extra.items()}}


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
