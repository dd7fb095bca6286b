"""The label of ArRFR's VGG-16 pre-training task (Yang 2025; the task itself is the bundle's choice).

The paper only says the VGG-16 is "pretrained on a shuffled dataset of sodium and T2W images". ``task="rotation"``
(default) is the self-supervised rotation pretext of Gidaris et al. (ICLR 2018): every shuffled sodium and T2w slice is
rotated by a random multiple of 90 degrees and the network predicts which (4 classes). The task is the same for both
modalities, so the features describe anatomy and edges rather than what separates the modalities; modality
classification (``"modality"``, 2 classes; ``"modality_plane"``, 6 classes) is offered but is a poor choice for a
*fusion* loss (``bundles/arrfr/docs/README.md``, "choices").
"""

from __future__ import annotations

from typing import Any, Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable

__all__ = ["PRETRAINING_TASKS", "PretextLabeld"]

PRETRAINING_TASKS = ("rotation", "modality", "modality_plane")


class PretextLabeld(Randomizable, MapTransform):
    """The VGG pre-training label. ``task="rotation"``: rotate ``keys`` by ``k * 90`` degrees in the (0, 1) plane of a
    channel-first 2D image with a random ``k`` in {0, 1, 2, 3} and write ``k`` to ``label_key`` (non-square images:
    ``k`` in {0, 2}, so the shape is kept); other tasks keep the datalist's label and the image unchanged."""

    def __init__(self, keys: KeysCollection = "image", label_key: str = "label", task: str = "rotation",
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if task not in PRETRAINING_TASKS:
            raise ValueError(f"task must be one of {PRETRAINING_TASKS}, got {task!r}.")
        self.label_key, self.task = label_key, task
        self._k = 0

    def randomize(self, data: Any = None, square: bool = True) -> None:
        self._k = int(self.R.randint(4)) if square else 2 * int(self.R.randint(2))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.task != "rotation":
            return d
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        first = d[keys[0]]
        self.randomize(square=first.shape[-1] == first.shape[-2])
        for key in keys:
            img = d[key]
            rotated = torch.rot90(img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img), self._k,
                                  dims=(-2, -1)).contiguous()
            if isinstance(img, MetaTensor):
                rotated = MetaTensor(rotated, meta=dict(img.meta))
            d[key] = rotated
        d[self.label_key] = self._k
        return d
