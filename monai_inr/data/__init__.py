"""Data: the synthetic multi-contrast / sodium brain (:mod:`monai_inr.data.phantom`), datalist builders, and the
coordinate datasets of subject-specific fits (:mod:`monai_inr.data.coordinates`).

The phantom module is imported lazily (on first attribute access), so ``python -m monai_inr.data.phantom`` runs it
as ``__main__`` cleanly and ``import monai_inr.data`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from monai_inr.data.datalist import build_folder_datalist, load_datalist, select_keys, split_ids, write_datalist

_PHANTOM_NAMES = ("Subject", "make_subject", "write_subject", "build_dataset", "IMAGE_KEYS", "STRUCTURAL_KEYS",
                  "SODIUM_KEYS", "LABELS")

__all__ = ["phantom", *_PHANTOM_NAMES, "build_folder_datalist", "load_datalist", "select_keys", "split_ids",
           "write_datalist"]


def __getattr__(name: str) -> Any:
    if name == "phantom" or name in _PHANTOM_NAMES:
        module = importlib.import_module("monai_inr.data.phantom")
        return module if name == "phantom" else getattr(module, name)
    raise AttributeError(f"module 'monai_inr.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + ["phantom", *_PHANTOM_NAMES])

from monai_inr.data.nexus import NEXUS_LABELS, build_brats_datalist, build_nexus_dataset

__all__ += ["NEXUS_LABELS", "build_brats_datalist", "build_nexus_dataset"]

from monai_inr.data.coordinates import ContrastPair, CoordinateDataset, ShuffledBatchSampler

__all__ += ["ContrastPair", "CoordinateDataset", "ShuffledBatchSampler"]
