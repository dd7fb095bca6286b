"""Tiny Nexus-INR-style subjects for the evaluation and segmentation tests, independent of monai_inr.data.nexus.

Each subject comes from the phantom (with a lesion) at a coarse spacing: HR T1w/T2w ground truth, the T1w with thick
slices along z (x2) and the T2w with thick slices along y (x4) (:class:`ThickSliceAcquisition`, box profile), a
label map (phantom tumour 5 -> 1 tumour core, oedema 4 -> 2, everything else 0) and the brain mask.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from monai_inr.data.phantom import LABELS, make_subject
from monai_inr.io import save_nifti
from monai_inr.transforms import ThickSliceAcquisition


def nexus_labels(phantom_labels: np.ndarray) -> np.ndarray:
    out = np.zeros(phantom_labels.shape, dtype=np.uint8)
    out[phantom_labels == LABELS["tumour"]] = 1
    out[phantom_labels == LABELS["oedema"]] = 2
    return out


def write_subject(out_dir: Path, sid: str, seed: int, spacing: float = 6.0, lesion: bool = True) -> dict:
    s = make_subject(seed, spacing=spacing, lesion=lesion, contrasts=["t1w", "t2w"])
    out_dir.mkdir(parents=True, exist_ok=True)
    item = {"subject": sid}
    for key in ("t1w", "t2w"):
        item[key] = str(save_nifti(s.images[key], s.affine, out_dir / f"{sid}_{key}.nii.gz"))
    for key, axis, factor in (("t1w", 2, 2.0), ("t2w", 1, 4.0)):
        lr = ThickSliceAcquisition(axis=axis, factor=factor)(s.images[key][None], affine=s.affine)
        path = out_dir / f"{sid}_{key}_lr.nii.gz"
        item[f"{key}_lr"] = str(save_nifti(np.asarray(lr[0]), np.asarray(lr.affine), path))
    item["label"] = str(save_nifti(nexus_labels(s.labels), s.affine, out_dir / f"{sid}_label.nii.gz", dtype=np.uint8))
    item["mask"] = str(save_nifti(s.mask, s.affine, out_dir / f"{sid}_mask.nii.gz", dtype=np.uint8))
    return item


def write_datalist(out_dir: Path, num_train: int = 2, num_test: int = 1, spacing: float = 6.0) -> Path:
    doc = {
        "training": [write_subject(out_dir, f"train-{i}", 100 + i, spacing) for i in range(num_train)],
        "validation": [],
        "test": [write_subject(out_dir, f"test-{i}", 200 + i, spacing) for i in range(num_test)],
    }
    path = out_dir / "datalist.json"
    path.write_text(json.dumps(doc, indent=2))
    return path
