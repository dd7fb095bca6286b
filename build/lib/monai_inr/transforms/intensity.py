"""Min-max intensity normalisation that remembers the original range, so super-resolved outputs go back to it."""

from __future__ import annotations

from typing import Any, Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = [
    "MinMaxNormalize",
    "MinMaxNormalized",
    "RestoreIntensityd",
    "INTENSITY_MIN",
    "INTENSITY_MAX",
]

INTENSITY_MIN = "intensity_min"
INTENSITY_MAX = "intensity_max"


class MinMaxNormalize(Transform):
    """Map an image linearly to [0, 1] with its own min and max, and record both in the MetaTensor's meta.

    This is the protocol's per-volume normalisation (the evaluation protocol, :mod:`monai_inr.metrics.protocol`): the ground truth defines the range; inference
    maps predictions back with :class:`RestoreIntensityd`.
    """

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        img = img if isinstance(img, MetaTensor) else MetaTensor(torch.as_tensor(img))
        lo, hi = float(img.min()), float(img.max())
        if hi <= lo:
            raise ValueError(f"cannot normalise a constant image (every voxel is {lo:g}).")
        out = (img.float() - lo) / (hi - lo)
        out.meta[INTENSITY_MIN] = lo
        out.meta[INTENSITY_MAX] = hi
        return out


class MinMaxNormalized(MapTransform):
    """Dictionary version of :class:`MinMaxNormalize`."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalize = MinMaxNormalize()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalize(d[key])
        return d


class RestoreIntensityd(MapTransform):
    """Map ``keys`` from [0, 1] back to the intensity range recorded on ``source_key`` by :class:`MinMaxNormalize`."""

    def __init__(self, keys: KeysCollection, source_key: str = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = source_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        meta = getattr(d[self.source_key], "meta", {})
        if INTENSITY_MIN not in meta:
            raise KeyError(f"{self.source_key} carries no recorded intensity range; normalise it with MinMaxNormalized.")
        lo, hi = float(meta[INTENSITY_MIN]), float(meta[INTENSITY_MAX])
        for key in self.key_iterator(d):
            d[key] = d[key] * (hi - lo) + lo
        return d
