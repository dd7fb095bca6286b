"""Synthetic multi-contrast super-resolution subjects: two anisotropic scans in complementary orientations.

Following McGinnis, Shit et al. (MICCAI 2023, Table 2: BraTS T1w axial 1x1x4 mm and T2w coronal 1x4x1 mm), each
subject of the project's synthetic brain (:mod:`monai_inr.data.phantom`) gives

* the ground truth: T1w and T2w on the isotropic grid (``spacing`` mm) and the brain mask;
* contrast 1: T1w acquired with thick **axial** slices (along array axis 2 = z, RAS), ``slice_factor`` HR voxels
  thick;
* contrast 2: T2w acquired with thick **coronal** slices (along array axis 1 = y).

The degradation is :class:`monai_inr.transforms.ThickSliceAcquisition` (box slice profile by default: each slice
averages the HR voxels it covers, contiguous slices), so both LR scans keep the HR field of view and carry affines
with the thick spacing; the union FOV of the pair is the HR FOV.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from monai_inr.data.datalist import current_datalist
from monai_inr.errors import InputError
from monai_inr.io import save_nifti, write_text_atomic
from monai_inr.transforms import ThickSliceAcquisition

__all__ = ["build_multi_contrast_dataset", "load_multi_contrast_datalist", "input_pair", "ORIENTATION_AXES"]

#: thick-slice axis of each named orientation for RAS arrays (i, j, k) = (x, y, z)
ORIENTATION_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
_VERSION = 2  # 2: lesion choice and subject seeds from the phantom's test split


def build_multi_contrast_dataset(
    out_dir: str | os.PathLike,
    num_subjects: int = 5,
    spacing: float = 1.0,
    slice_factor: float = 4.0,
    contrasts: Sequence[str] = ("t1w", "t2w"),
    orientations: Sequence[str] = ("axial", "coronal"),
    profile: str = "box",
    lesion: bool | float = 0.5,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Write ``num_subjects`` synthetic subjects with their two anisotropic scans; return ``<out_dir>/datalist.json``.

    Datalist items (``"test"`` split): ``subject``, ``contrast1``, ``contrast2`` (the LR inputs), ``label1``,
    ``label2`` (ground truths of the same contrasts), ``mask`` (brain mask on the ground-truth grid), with absolute
    paths. Subject ``i`` uses phantom seed ``1_000_000 * seed + 3 * i + 2`` (the phantom's test-split seeds, never
    its training subjects). Idempotent: an up-to-date datalist with all its files is reused.

    Args:
        spacing: ground-truth voxel size in mm (1.0: the full 197x233x189 grid; 2.0: the small 99x117x95 grid).
        slice_factor: slice thickness in ground-truth voxels (4: 4 mm slices on the 1 mm grid).
        contrasts: phantom image keys of contrast 1 and 2.
        orientations: thick-slice orientation of each contrast (``axial``, ``coronal``, ``sagittal``).
        profile: slice profile of :class:`~monai_inr.transforms.ThickSliceAcquisition`.
        lesion: fraction of subjects with a tumour (or a boolean).
    """
    # imported on first use, like monai_inr.data does, so `python -m monai_inr.data.phantom` runs it as __main__ cleanly
    from monai_inr.data.phantom import FILE_SUFFIXES, lesion_flags, make_subject, subject_seed

    if isinstance(num_subjects, bool) or int(num_subjects) < 1:
        raise InputError(f"num_subjects must be a positive integer, got {num_subjects!r}.")
    if len(contrasts) != 2 or len(orientations) != 2:
        raise InputError(f"give two contrasts and two orientations, got {list(contrasts)} and {list(orientations)}.")
    bad = [o for o in orientations if o not in ORIENTATION_AXES]
    if bad:
        raise InputError(f"unknown orientation(s) {bad}: choose from {sorted(ORIENTATION_AXES)}.")
    if not (math.isfinite(float(slice_factor)) and float(slice_factor) >= 1):
        raise InputError(f"slice_factor must be >= 1, got {slice_factor!r}.")
    out = Path(out_dir).resolve()
    path = out / "datalist.json"
    params = {
        "version": _VERSION,
        "num_subjects": int(num_subjects),
        "spacing": float(spacing),
        "slice_factor": float(slice_factor),
        "contrasts": list(contrasts),
        "orientations": list(orientations),
        "profile": profile,
        "lesion": float(lesion),
        "seed": int(seed),
    }
    if not force and current_datalist(path, params, ("test",)) is not None:
        return path
    out.mkdir(parents=True, exist_ok=True)
    flags = lesion_flags(int(seed), "test", int(num_subjects), lesion, ("test",))
    items = []
    for i in range(int(num_subjects)):
        sid = f"sub-{i:04d}"
        s_seed = subject_seed(int(seed), "test", i)
        subj = make_subject(s_seed, spacing=float(spacing), lesion=flags[i], contrasts=list(contrasts))
        item: dict[str, Any] = {"subject": sid}
        item["mask"] = str(save_nifti(subj.mask, subj.affine, out / f"{sid}_desc-brain_mask.nii.gz", dtype=np.uint8))
        for c, (key, orient) in enumerate(zip(contrasts, orientations), start=1):
            suffix = FILE_SUFFIXES.get(key, key)
            hr = subj.images[key]
            item[f"label{c}"] = str(save_nifti(hr, subj.affine, out / f"{sid}_{suffix}.nii.gz"))
            lr = ThickSliceAcquisition(axis=ORIENTATION_AXES[orient], factor=float(slice_factor), profile=profile)(
                hr[None], affine=subj.affine
            )
            name = f"{sid}_acq-{orient}{float(slice_factor) * float(spacing):g}mm_{suffix}.nii.gz"
            item[f"contrast{c}"] = str(save_nifti(np.asarray(lr[0]), np.asarray(lr.affine), out / name))
        item["lesion"] = str(bool(flags[i])).lower()
        items.append(item)
    doc = {
        "test": [{k: v for k, v in it.items() if k != "lesion"} for it in items],
        "metadata": {
            "name": "monai-inr synthetic multi-contrast thick-slice pairs",
            "parameters": params,
            "lesion": {it["subject"]: it["lesion"] == "true" for it in items},
            "degradation": f"ThickSliceAcquisition(profile={profile}, factor={slice_factor}) along "
            f"{orientations[0]} (contrast 1) and {orientations[1]} (contrast 2)",
        },
    }
    write_text_atomic(path, json.dumps(doc, indent=2))  # unique temporary name: DDP ranks may race
    return path


def load_multi_contrast_datalist(path: str | os.PathLike, split: str = "test") -> list[dict[str, str]]:
    """The items of one split of a datalist written by :func:`build_multi_contrast_dataset`."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: datalist not found.")
    items = json.loads(p.read_text(encoding="utf-8")).get(split, [])
    if not items:
        raise InputError(f"{p}: no items in the {split!r} split.")
    return items


def input_pair(
    contrast1: str | os.PathLike | None,
    contrast2: str | os.PathLike | None,
    synthetic_dir: str | os.PathLike,
    **kwargs: Any,
) -> tuple[str, str]:
    """The two contrast files of a fit: the given ones, or (both empty) a synthetic subject built on first use.

    With neither ``contrast1`` nor ``contrast2`` given, :func:`build_multi_contrast_dataset` writes one subject with a
    tumour to ``synthetic_dir`` (``kwargs``: ``spacing``, ``slice_factor``, ``profile``, ``seed``, ...) and its two
    thick-slice scans are returned; this is what ``train.json`` fits when run without inputs.

    Raises:
        InputError: only one of the two contrasts is given.
    """
    given = [bool(c is not None and str(c).strip()) for c in (contrast1, contrast2)]
    if all(given):
        return str(contrast1), str(contrast2)
    if any(given):
        missing = "contrast2" if given[0] else "contrast1"
        raise InputError(
            f"{missing}: no file given; pass both --contrast1 and --contrast2 (or neither for a synthetic subject)."
        )
    opts = {"num_subjects": 1, "lesion": 1.0, **kwargs}
    (item,) = load_multi_contrast_datalist(build_multi_contrast_dataset(synthetic_dir, **opts))[:1]
    return item["contrast1"], item["contrast2"]
