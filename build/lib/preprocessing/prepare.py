"""Dataset preparation for the ArRFR bundle: zero-pad to a cube, slice along three planes, min-max normalise, datalist.

Per subject (inputs: the 2x-upsampled sodium magnitude and the T2w registered onto it, same grid):

1. centred zero-padding to ``cube``^3 (default 112; an axis longer than the cube is cropped centrally), with the
   affine's origin moved so every voxel keeps its physical position; pad/crop widths are recorded;
2. min-max normalisation to [0, 1], per volume (default; the paper does not say which) or per slice; min and max are
   recorded;
3. 2D slices along the sagittal, coronal and axial planes (identified from the affine, RAS), saved as float32 ``.npy``
   (H, W) arrays; optionally slices whose sodium and T2w are both empty are dropped (off by default).

:func:`build_datalist` gathers the subjects' slice indexes into a MONAI datalist: lesion subjects go to ``test``,
healthy subjects are split 3:1 into ``training`` and ``test`` by subject (optionally a validation share of training),
deterministically by seed. Paths are relative to the datalist's folder.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np

from monai_inr.errors import InputError

__all__ = [
    "PrepareConfig",
    "PLANES",
    "pad_or_crop",
    "plane_axes",
    "minmax_normalise",
    "slice_volumes",
    "build_datalist",
]

log = logging.getLogger(__name__)

PLANES = ("sagittal", "coronal", "axial")


@dataclass
class PrepareConfig:
    cube: int = 112
    norm: str = "volume"
    planes: tuple[str, ...] = PLANES
    drop_empty: bool = False

    def __post_init__(self):
        if self.cube < 2:
            raise ValueError(f"cube must be at least 2 voxels, got {self.cube}.")
        if self.norm not in ("volume", "slice"):
            raise ValueError(f"norm must be 'volume' or 'slice', got {self.norm!r}.")
        bad = [p for p in self.planes if p not in PLANES]
        if bad or not self.planes:
            raise ValueError(f"planes must be a non-empty subset of {PLANES}, got {self.planes}.")


def pad_or_crop(array: np.ndarray, affine: np.ndarray, cube: int | Sequence[int] = 112):
    """Centred zero-padding (or central cropping) to ``cube`` voxels per axis, keeping physical positions.

    Returns ``(array, affine, info)`` with ``info = {"pad_before", "pad_after", "crop_before", "crop_after"}``; an odd
    difference puts the extra voxel after. The new origin is ``affine @ (-pad_before + crop_before)``.
    """
    arr = np.asarray(array)
    target = np.broadcast_to(np.asarray(cube, dtype=int), (arr.ndim,))
    pad_b, pad_a, crop_b, crop_a = [], [], [], []
    for n, t in zip(arr.shape, target):
        d = int(t) - int(n)
        pad_b.append(max(d, 0) // 2)
        pad_a.append(max(d, 0) - max(d, 0) // 2)
        crop_b.append(max(-d, 0) // 2)
        crop_a.append(max(-d, 0) - max(-d, 0) // 2)
    arr = arr[tuple(slice(b, n - a) for b, a, n in zip(crop_b, crop_a, arr.shape))]
    arr = np.pad(arr, list(zip(pad_b, pad_a)), mode="constant", constant_values=0)
    shift = np.asarray(crop_b, dtype=np.float64) - np.asarray(pad_b, dtype=np.float64)
    out = np.array(affine, dtype=np.float64)
    out[:3, 3] = affine[:3, :3] @ shift + affine[:3, 3]
    info = {"pad_before": pad_b, "pad_after": pad_a, "crop_before": crop_b, "crop_after": crop_a}
    return arr, out, info


def plane_axes(affine: np.ndarray) -> dict[str, int]:
    """Array axis to slice along for each plane: L/R -> sagittal, A/P -> coronal, S/I -> axial (closest RAS axis)."""
    codes = nib.aff2axcodes(affine)
    out = {}
    for axis, c in enumerate(codes):
        out[{"L": "sagittal", "R": "sagittal", "A": "coronal", "P": "coronal", "S": "axial", "I": "axial"}[c]] = axis
    return out


def minmax_normalise(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(x - min) / (max - min) in float32, with min and max; a constant array maps to zeros."""
    x = np.asarray(x, dtype=np.float32)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros_like(x), lo, hi
    return ((x - lo) / (hi - lo)).astype(np.float32), lo, hi


def slice_volumes(
    volumes: dict[str, np.ndarray], affine: np.ndarray, config: PrepareConfig
) -> tuple[list[dict], dict[str, dict]]:
    """Normalise and slice co-registered volumes of one cube.

    Returns a list of slices ``{"plane", "index", "arrays": {key: 2D float32}, "empty", "minmax": {key: [lo, hi]}}``
    and per-volume normalisation stats (``{key: {"min", "max"}}`` in volume mode).
    """
    shapes = {k: v.shape for k, v in volumes.items()}
    if len(set(shapes.values())) != 1:
        raise InputError(f"the volumes to slice must share one grid, got shapes {shapes}.")
    axes = plane_axes(affine)
    normed, stats = {}, {}
    for key, vol in volumes.items():
        if config.norm == "volume":
            normed[key], lo, hi = minmax_normalise(vol)
            stats[key] = {"min": lo, "max": hi}
        else:
            normed[key] = np.asarray(vol, np.float32)
    slices = []
    for plane in config.planes:
        axis = axes[plane]
        for idx in range(next(iter(volumes.values())).shape[axis]):
            arrays, mm = {}, {}
            for key, vol in normed.items():
                s = np.ascontiguousarray(np.take(vol, idx, axis=axis))
                if config.norm == "slice":
                    s, lo, hi = minmax_normalise(s)
                    mm[key] = [lo, hi]
                arrays[key] = s
            empty = all(float(np.take(volumes[k], idx, axis=axis).max()) <= 0 for k in volumes)
            if empty and config.drop_empty:
                continue
            slices.append({"plane": plane, "index": idx, "arrays": arrays, "empty": empty, "minmax": mm})
    return slices, stats


def _split_subjects(subjects: list[str], ratio: tuple[int, int], seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    order = sorted(subjects)
    rng.shuffle(order)
    n_train = int(round(len(order) * ratio[0] / sum(ratio))) if order else 0
    if len(order) >= 2:
        n_train = min(max(n_train, 1), len(order) - 1)
    return sorted(order[:n_train]), sorted(order[n_train:])


def build_datalist(
    root: str | os.PathLike,
    out_path: str | os.PathLike | None = None,
    healthy_split: tuple[int, int] = (3, 1),
    val_fraction: float = 0.0,
    seed: int = 0,
    include_empty: bool = True,
) -> dict:
    """MONAI datalist over every ``sub-*/sub-*_desc-slices_index.json`` under ``root``.

    Entries: ``{"sodium": <npy>, "t2w": <npy>, "subject", "plane", "slice", "lesion", "empty"}`` with paths relative
    to the datalist's folder (``out_path``'s parent, default ``root``). Lesion subjects -> ``test``; healthy subjects
    -> ``training``/``test`` by ``healthy_split``; ``val_fraction`` of the training subjects -> ``validation``.
    """
    from .outputs import write_json

    root = Path(root)
    indexes = sorted(root.glob("sub-*/sub-*_desc-slices_index.json"))
    if not indexes:
        raise InputError(f"{root}: no prepared subjects found (expected sub-*/sub-*_desc-slices_index.json).")
    out_path = Path(out_path) if out_path is not None else root / "datalist.json"
    base = out_path.parent.resolve()
    subjects = {}
    for p in indexes:
        with open(p) as fh:
            subjects[p.parent.name] = (p.parent, json.load(fh))
    lesion = sorted(s for s, (_, d) in subjects.items() if d.get("lesion"))
    healthy = sorted(s for s in subjects if s not in lesion)
    train, test_h = _split_subjects(healthy, healthy_split, seed)
    n_val = int(round(len(train) * val_fraction))
    val = sorted(np.random.default_rng(seed + 1).permutation(train)[:n_val].tolist()) if n_val else []
    train = [s for s in train if s not in val]
    split_of = {**{s: "training" for s in train}, **{s: "validation" for s in val},
                **{s: "test" for s in test_h + lesion}}
    out = {"training": [], "validation": [], "test": []}
    for sub, (folder, d) in sorted(subjects.items()):
        for e in d["slices"]:
            if e.get("empty") and not include_empty:
                continue
            out[split_of[sub]].append({
                "sodium": os.path.relpath((folder / e["sodium"]).resolve(), base),
                "t2w": os.path.relpath((folder / e["t2w"]).resolve(), base),
                "subject": sub,
                "plane": e["plane"],
                "slice": e["index"],
                "lesion": bool(d.get("lesion")),
                "empty": bool(e.get("empty")),
            })
    out["description"] = (
        "ArRFR 2D slice dataset: min-max normalised sodium and registered T2w slices (float32 .npy, H x W) of "
        f"{len(subjects)} subjects; lesion subjects in test, healthy split {healthy_split[0]}:{healthy_split[1]} "
        f"(training:test) by subject, seed {seed}."
    )
    out["subjects"] = {"training": train, "validation": val, "test": sorted(test_h + lesion)}
    write_json(out, out_path)
    return out


def config_dict(config: PrepareConfig) -> dict:
    return asdict(config)
