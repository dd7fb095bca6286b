"""Nexus-INR training samples: z-score normalisation and paired anisotropic patches with sampled HR query points.

Zhang et al., "Nexus-INR", arXiv:2508.03073, 2025, section 4.1-4.2: volumes normalised to zero mean and unit
variance; T1w patches 40 x 40 x 20 and T2w patches 40 x 10 x 40 over one 40^3 HR patch, kept only when they contain
enough foreground; random flips and rotations.

* :class:`NexusZScored`: each modality's LR volume and its HR ground truth are z-scored with the LR volume's mean and
  standard deviation (the only statistics available at inference), stored under ``<lr_key>_stats`` so predictions
  map back to input units;
* :class:`RandNexusPatchd`: one HR patch of ``hr_patch_size`` voxels and the two LR patches over exactly the same
  field of view (start and size aligned to the slice factors, which are read from the HR/LR shapes), ``num_coords``
  HR voxels drawn without replacement as query points with their T1w/T2w targets and tumour labels; random flips
  along every axis (the group they generate holds every 180-degree rotation, the only rotations that keep each
  modality's thick-slice axis; 90-degree rotations would move T1w's thick axis and are not used).
"""

from __future__ import annotations

import math
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable

from monai_inr import coords
from monai_inr.errors import InputError

__all__ = ["MODALITIES", "NexusZScored", "RandNexusPatchd", "zscore_stats", "slice_factors_of"]

#: the two Nexus-INR modalities, in the order of the network's inputs and outputs
MODALITIES = ("t1w", "t2w")


def zscore_stats(image: Any, name: str = "image") -> tuple[float, float]:
    """``(mean, std)`` over the whole volume (background included, as "zero mean and unit variance" reads)."""
    arr = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image)
    x = torch.as_tensor(arr, dtype=torch.float64)
    mean, std = float(x.mean()), float(x.std(unbiased=False))
    if not (math.isfinite(std) and std > 0):
        raise InputError(f"{name}: the image is constant, it cannot be z-score normalised.")
    return mean, std


def slice_factors_of(hr_shape: Sequence[int], lr_shape: Sequence[int], name: str = "image") -> tuple[int, ...]:
    """Integer ``HR / LR`` size ratio per axis; raises :class:`InputError` when an axis is not a whole multiple."""
    out = []
    for n, m in zip(hr_shape, lr_shape):
        if m < 1 or n % m:
            raise InputError(
                f"{name}: its grid {tuple(lr_shape)} is not an integer sub-sampling of the HR grid {tuple(hr_shape)}; "
                f"build the data with monai_inr.data.nexus (HR padded to multiples of the slice factors)."
            )
        out.append(n // m)
    return tuple(out)


def _plain(x: Any) -> torch.Tensor:
    """A plain tensor (a MetaTensor's meta data is not needed for patches and slows every operation down)."""
    if isinstance(x, MetaTensor):
        return x.as_tensor()
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


class NexusZScored(MapTransform):
    """Z-score each modality with its LR volume's statistics: ``(x - mean_lr) / std_lr`` on LR and HR.

    Args:
        lr_keys: the LR inputs (T1w, T2w).
        hr_keys: the HR ground truths of the same modalities (missing ones are skipped, e.g. at inference).
        stats_postfix: ``d[lr_key + stats_postfix]`` = ``tensor([mean, std])``.
    """

    def __init__(
        self,
        lr_keys: Sequence[str] = ("t1w_lr", "t2w_lr"),
        hr_keys: Sequence[str] = ("t1w", "t2w"),
        stats_postfix: str = "_stats",
    ) -> None:
        super().__init__(list(lr_keys))
        self.lr_keys, self.hr_keys, self.postfix = list(lr_keys), list(hr_keys), stats_postfix

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for lk, hk in zip(self.lr_keys, self.hr_keys):
            mean, std = zscore_stats(d[lk], name=lk)
            d[lk] = (d[lk] - mean) / std
            if hk in d:
                d[hk] = (d[hk] - mean) / std
            d[lk + self.postfix] = torch.tensor([mean, std], dtype=torch.float64)
        return d


class RandNexusPatchd(Randomizable, MapTransform):
    """Paired T1w/T2w LR patches over one HR patch, plus HR query points, targets and labels.

    Output keys: ``t1w_lr`` / ``t2w_lr`` (LR patches, channel first, plain tensors), ``coord`` ``(K, 3)`` normalised
    HR-patch coordinates of the query voxels, ``position`` ``(K, 3)`` the same voxels' normalised coordinates in the
    whole volume's field of view (the frame of the absolute positional encoding, Zhang et al. 2025 eq. 17, which
    whole-volume inference uses too; the LR volumes cover the HR field of view, so it is every modality's frame),
    ``target`` ``(K, 2)`` HR T1w and T2w there, ``seg`` ``(K,)`` labels (when ``label_key`` is present),
    ``foreground`` (mask fraction of the chosen patch).

    A flip is taken as a flip of the whole volume: ``position`` is the coordinate in the flipped volume (the patch
    then starts at ``N - start - size`` along a flipped axis), so content and position stay a consistent pair.

    Args:
        hr_patch_size: HR patch (paper 40^3; each axis a multiple of both slice factors along it).
        num_coords: query points per patch (all voxels when larger than the patch).
        min_foreground: least fraction of foreground voxels (``mask_key``; without a mask: HR T1w above its mean) in
            a patch for it to be kept; after ``max_tries`` draws the one with the most foreground is used.
        flip_prob: probability of flipping all patches along each axis.
        hr_keys, lr_keys, label_key, mask_key: input keys.
    """

    def __init__(
        self,
        hr_patch_size: Sequence[int] = (40, 40, 40),
        num_coords: int = 8000,
        min_foreground: float = 0.3,
        max_tries: int = 10,
        flip_prob: float = 0.5,
        hr_keys: Sequence[str] = ("t1w", "t2w"),
        lr_keys: Sequence[str] = ("t1w_lr", "t2w_lr"),
        label_key: str | None = "label",
        mask_key: str | None = "mask",
    ) -> None:
        MapTransform.__init__(self, list(hr_keys) + list(lr_keys))
        self.patch = tuple(int(p) for p in hr_patch_size)
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ValueError(f"hr_patch_size must be three positive integers, got {hr_patch_size}.")
        self.num_coords, self.min_fg, self.max_tries = int(num_coords), float(min_foreground), max(1, int(max_tries))
        self.flip_prob = float(flip_prob)
        self.hr_keys, self.lr_keys, self.label_key, self.mask_key = list(hr_keys), list(lr_keys), label_key, mask_key

    def randomize(self, data: Any = None) -> None:  # draws happen in __call__ with self.R
        pass

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        d = dict(data)
        hr = [_plain(d[k]).float() for k in self.hr_keys]
        lr = [_plain(d[k]).float() for k in self.lr_keys]
        shape = tuple(hr[0].shape[1:])
        factors = [slice_factors_of(shape, x.shape[1:], name=k) for x, k in zip(lr, self.lr_keys)]
        step = [math.lcm(factors[0][a], factors[1][a]) for a in range(3)]
        for a in range(3):
            if self.patch[a] % step[a]:
                raise ValueError(
                    f"hr_patch_size {self.patch} must be a multiple of {step} (the slice factors) per axis."
                )
            if self.patch[a] > shape[a]:
                raise InputError(f"the HR volume {shape} is smaller than the HR patch {self.patch}.")
        mask = d.get(self.mask_key) if self.mask_key else None
        if mask is not None:
            fg = _plain(mask)[0] > 0
        else:
            fg = hr[0][0] > hr[0][0].mean()
        best, best_frac = None, -1.0
        for _ in range(self.max_tries):
            start = [int(self.R.randint(0, (shape[a] - self.patch[a]) // step[a] + 1)) * step[a] for a in range(3)]
            sl = tuple(slice(s, s + p) for s, p in zip(start, self.patch))
            frac = float(fg[sl].float().mean())
            if frac > best_frac:
                best, best_frac = start, frac
            if frac >= self.min_fg:
                break
        start = best
        hr_sl = (slice(None),) + tuple(slice(s, s + p) for s, p in zip(start, self.patch))
        hr_p = [x[hr_sl] for x in hr]
        lr_p = [
            x[(slice(None),) + tuple(slice(s // f, (s + p) // f) for s, p, f in zip(start, self.patch, fm))]
            for x, fm in zip(lr, factors)
        ]
        lab = _plain(d[self.label_key])[hr_sl].long() if self.label_key and self.label_key in d else None
        flips = [a + 1 for a in range(3) if self.R.rand() < self.flip_prob]
        if flips:
            hr_p = [x.flip(flips) for x in hr_p]
            lr_p = [x.flip(flips) for x in lr_p]
            lab = lab.flip(flips) if lab is not None else None
        n = int(np.prod(self.patch))
        k = min(self.num_coords, n)
        idx = torch.from_numpy(self.R.choice(n, size=k, replace=False).astype(np.int64))
        ijk = torch.stack(torch.unravel_index(idx, self.patch), dim=-1).float()
        # the patch's start in the (possibly flipped) whole volume, for the whole-volume coordinates
        origin = [shape[a] - start[a] - self.patch[a] if a + 1 in flips else start[a] for a in range(3)]
        out: dict[str, Any] = {
            "t1w_lr": lr_p[0].contiguous(),
            "t2w_lr": lr_p[1].contiguous(),
            "coord": coords.voxel_to_normalized(ijk, self.patch).float(),
            "position": coords.voxel_to_normalized(ijk.double() + torch.tensor(origin, dtype=torch.float64),
                                                   shape).float(),
            "target": torch.stack([x[0].reshape(-1)[idx] for x in hr_p], dim=-1),
            "foreground": torch.tensor(best_frac),
        }
        if lab is not None:
            out["seg"] = lab[0].reshape(-1)[idx]
        return out
