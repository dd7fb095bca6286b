"""Data: the synthetic multi-contrast / sodium brain (:mod:`monai_inr.data.phantom`), realistic subjects from real
individual anatomy (:mod:`monai_inr.data.anatomy`, :mod:`monai_inr.data.realistic`), datalist builders, and the
coordinate datasets of subject-specific fits (:mod:`monai_inr.data.coordinates`).

The phantom, anatomy and realistic modules are imported lazily (on first attribute access), so
``python -m monai_inr.data.phantom`` runs it as ``__main__`` cleanly and ``import monai_inr.data`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from monai_inr.data.datalist import build_folder_datalist, load_datalist, select_keys, split_ids, write_datalist

_PHANTOM_NAMES = ("Subject", "make_subject", "write_subject", "build_dataset", "IMAGE_KEYS", "STRUCTURAL_KEYS",
                  "SODIUM_KEYS", "LABELS", "Anatomy")
_LAZY = {"build_realistic_dataset": "monai_inr.data.realistic", "colin27_anatomy": "monai_inr.data.anatomy",
         "t1w_anatomy": "monai_inr.data.anatomy", "hemisphere_anatomy": "monai_inr.data.anatomy",
         "segment_t1w": "monai_inr.data.anatomy"}
_MODULES = ("phantom", "anatomy", "realistic")

__all__ = [*_MODULES, *_PHANTOM_NAMES, *_LAZY, "build_folder_datalist", "load_datalist", "select_keys", "split_ids",
           "write_datalist"]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"monai_inr.data.{name}")
    if name in _PHANTOM_NAMES:
        return getattr(importlib.import_module("monai_inr.data.phantom"), name)
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'monai_inr.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + [*_MODULES, *_PHANTOM_NAMES, *_LAZY])

from monai_inr.data.nexus import NEXUS_LABELS, build_brats_datalist, build_nexus_dataset

__all__ += ["NEXUS_LABELS", "build_brats_datalist", "build_nexus_dataset"]

from monai_inr.data.coordinates import ContrastPair, CoordinateDataset, ShuffledBatchSampler

__all__ += ["ContrastPair", "CoordinateDataset", "ShuffledBatchSampler"]
