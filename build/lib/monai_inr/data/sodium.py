"""Sodium + T2w slice datalists of ArRFR (Yang 2025), written by ``python -m preprocessing datalist``.

* :func:`fusion_items`: the sodium/T2w slice pairs of one split, for ArRFR training, validation and inference;
* :func:`pretraining_items`: every sodium and T2w slice as its own item, for the VGG-16 pre-training task
  (:class:`~monai_inr.transforms.PretextLabeld`);
* :func:`slice_shape`, :func:`num_pretraining_classes`, :func:`materialize`: what the bundle's configs size and fix.

The dataset itself is built by ``preprocessing.dataset.build_sodium_dataset`` (simulation and clinical preprocessing).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from monai_inr.errors import InputError
from monai_inr.transforms.pretext import PRETRAINING_TASKS

__all__ = [
    "PLANES",
    "PRETRAINING_TASKS",
    "read_datalist",
    "fusion_items",
    "pretraining_items",
    "num_pretraining_classes",
    "slice_shape",
    "materialize",
]

PLANES = ("sagittal", "coronal", "axial")


def read_datalist(datalist: str | os.PathLike) -> tuple[dict, Path]:
    """The datalist JSON and its folder (paths inside are relative to it)."""
    p = Path(datalist)
    if not p.is_file():
        raise InputError(f"{p}: datalist not found; build the dataset first (python -m preprocessing datalist ...).")
    try:
        with open(p) as fh:
            return json.load(fh), p.parent
    except json.JSONDecodeError as e:
        raise InputError(f"{p}: not a readable JSON datalist ({e.msg}).") from e


def _abs(base: Path, path: str) -> str:
    q = Path(path)
    return str(q if q.is_absolute() else (base / q).resolve())


def _subsample(items: list, max_items: int | None, seed: int) -> list:
    if max_items is None or max_items <= 0 or len(items) <= max_items:
        return items
    rng = random.Random(seed)
    picked = rng.sample(items, int(max_items))
    return sorted(picked, key=lambda e: (e.get("subject", ""), e.get("plane", ""), e.get("slice", 0)))


def fusion_items(
    datalist: str | os.PathLike,
    split: str = "training",
    include_empty: bool = False,
    max_items: int | None = None,
    seed: int = 0,
    fallback_split: str | None = None,
    fallback_count: int = 8,
) -> list[dict]:
    """``[{"sodium", "t2w", "subject", "plane", "slice"}]`` (absolute paths) of one split.

    Args:
        include_empty: keep slices where both images are zero (padding; off for training).
        max_items: a fixed random subset of this many slices (``None``: all).
        fallback_split: when ``split`` is empty (e.g. no validation subjects), take ``fallback_count`` evenly spaced
            slices of this split instead.
    """
    dl, base = read_datalist(datalist)
    entries = [e for e in (dl.get(split) or []) if include_empty or not e.get("empty", False)]
    if not entries and fallback_split:
        pool = [e for e in (dl.get(fallback_split) or []) if include_empty or not e.get("empty", False)]
        if pool:
            idx = np.linspace(0, len(pool) - 1, num=min(fallback_count, len(pool))).round().astype(int)
            entries = [pool[i] for i in np.unique(idx)]
    if not entries:
        raise InputError(f"{datalist}: the '{split}' split has no (non-empty) sodium/T2w slices.")
    out = []
    for e in entries:
        if "sodium" not in e or "t2w" not in e:
            raise InputError(f"{datalist}: entries need 'sodium' and 't2w' keys (got {sorted(e)}).")
        out.append({"sodium": _abs(base, e["sodium"]), "t2w": _abs(base, e["t2w"]), "subject": e.get("subject", ""),
                    "plane": e.get("plane", ""), "slice": int(e.get("slice", 0))})
    return _subsample(out, max_items, seed)


def pretraining_items(
    datalist: str | os.PathLike,
    split: str = "training",
    task: str = "rotation",
    include_empty: bool = False,
    max_items: int | None = None,
    seed: int = 0,
    fallback_split: str | None = None,
) -> list[dict]:
    """The VGG pre-training set: every sodium and every T2w slice of ``split`` as its own item, shuffled with ``seed``,
    ``{"image": path, "label": class}``; classes ``modality`` (``"modality"``, 0 = sodium, 1 = T2w) or
    ``modality * 3 + plane`` (``"modality_plane"``, planes in :data:`PLANES` order); for ``"rotation"`` the label is a
    placeholder set by :class:`PretextLabeld`."""
    if task not in PRETRAINING_TASKS:
        raise InputError(f"unknown VGG pre-training task {task!r}; choose one of {', '.join(PRETRAINING_TASKS)}.")
    pairs = fusion_items(datalist, split, include_empty, None, seed, fallback_split)
    items = []
    for e in pairs:
        plane = PLANES.index(e["plane"]) if e["plane"] in PLANES else 0
        for m, key in enumerate(("sodium", "t2w")):
            label = {"modality_plane": m * 3 + plane, "modality": m}.get(task, 0)
            items.append({"image": e[key], "label": label, "modality": key, "plane": e["plane"]})
    random.Random(seed).shuffle(items)
    if max_items is not None and 0 < max_items < len(items):
        items = items[: int(max_items)]
    return items


def num_pretraining_classes(task: str = "rotation") -> int:
    """Classes of the VGG pre-training task."""
    if task not in PRETRAINING_TASKS:
        raise InputError(f"unknown VGG pre-training task {task!r}; choose one of {', '.join(PRETRAINING_TASKS)}.")
    return {"rotation": 4, "modality": 2, "modality_plane": 6}[task]


def slice_shape(datalist: str | os.PathLike, split: str = "training") -> tuple[int, ...]:
    """Shape of the first slice of a split (the training slices share it: the prepared cube)."""
    items = fusion_items(datalist, split, include_empty=True, fallback_split="test")
    arr = np.load(items[0]["sodium"], mmap_mode="r")
    return tuple(int(n) for n in arr.shape)


def materialize(transform: Any, items: Sequence[Mapping]) -> list[dict]:
    """Apply ``transform`` once to every item (fixed, reproducible validation samples, noise included)."""
    return [transform(dict(item)) for item in items]
