"""Realistic subjects: real individual anatomy (Colin27, or a user's T1w) through the phantom's signal equations.

Each subject is :func:`monai_inr.data.phantom.make_subject` on an :class:`~monai_inr.data.phantom.Anatomy` from
:mod:`monai_inr.data.anatomy` instead of the population-average MNI152 template: the tissue fractions of one real brain
(segmented at full resolution), with the phantom's random pose, smooth deformation, bias field, relaxation jitter and
optional lesions, and every contrast (T1w MPRAGE, T2w, PD, FLAIR, sodium maps) from the same signal equations.

Held-out anatomy (``holdout="hemisphere"``, the default): training subjects are built from the LEFT hemisphere
mirrored onto both sides, validation and test subjects from the RIGHT hemisphere mirrored (and, as in the phantom,
from disjoint seeds), so the anatomy a model is tested on was never seen in training. ``holdout="none"`` uses the
whole brain for every split (seeds still disjoint).

The real scan itself is written too (datalist key ``"real"``, one item): for Colin27 the 1 mm head ``ch2.nii.gz``
(float32 copy, same grid and affine), its brain mask restricted to the held-out (right) hemisphere with the hemisphere
hold-out (whole brain otherwise) and the tissue labels (0 background, 1 CSF, 2 GM, 3 WM) on its grid; for a user T1w
the T1w itself. Colin27 is an average of 27 scans: add noise to it to make inputs and keep it as the clean reference.

Command line: ``python -m monai_inr.data.realistic --output_dir data/realistic --num_train 12 --spacing 1``.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path
from typing import Any, Sequence

import nibabel as nib
import numpy as np

from monai_inr.data import anatomy as anat
from monai_inr.data.datalist import current_datalist
from monai_inr.data.phantom import (FILE_SUFFIXES, IMAGE_KEYS, LABELS, _check_args, _write_json, lesion_flags,
                                    make_subject, subject_seed, write_subject)
from monai_inr.errors import InputError
from monai_inr.io import save_nifti

__all__ = ["REALISTIC_VERSION", "HOLDOUTS", "SPLIT_HEMISPHERE", "build_realistic_dataset", "write_real_scan", "main"]

#: Bumped whenever the builder's output changes; recorded in datalists so stale datasets are rebuilt.
REALISTIC_VERSION = "2"
HOLDOUTS = ("hemisphere", "none")
#: Which hemisphere each split is built from with ``holdout="hemisphere"``.
SPLIT_HEMISPHERE = {"training": "left", "validation": "right", "test": "right"}
_SPLITS = ("training", "validation", "test")


def _hemisphere_mask(shape: Sequence[int], affine: np.ndarray, plane_x: float, side: str) -> np.ndarray:
    """Voxels whose centre lies on ``side`` of the world plane ``x = plane_x`` (RAS: right = x > plane)."""
    x = (affine[0, :3] @ np.indices(shape, dtype=np.float32).reshape(3, -1) + affine[0, 3]).reshape(shape)
    return x > plane_x if side == "right" else x < plane_x


def write_real_scan(out_dir: str | os.PathLike, image: str | os.PathLike, segmentation: "anat.Segmentation",
                    side: str | None = "right", plane_x: float | None = None, subject_id: str = "real-0000",
                    crop: bool = False) -> dict[str, str]:
    """Write a real T1w (float32 copy, same grid), its brain mask (restricted to ``side`` of the mid-sagittal plane
    ``x = plane_x`` when ``side`` is given) and tissue labels resampled from ``segmentation``; a datalist item.

    ``crop=True`` (with ``side``) keeps only the bounding box of the voxels on ``side`` (affine translated to match),
    so a training pipeline that draws patches anywhere in the image never sees the other hemisphere (exact for the
    axis-aligned Colin27 grid)."""
    src = nib.load(str(image))
    data = np.asarray(src.dataobj, dtype=np.float32)
    while data.ndim > 3:
        data = data[..., 0]
    affine = np.asarray(src.affine, dtype=np.float64)
    shape = data.shape
    fractions = np.stack([anat._area_resample(f, segmentation.affine, shape, affine) for f in segmentation.fractions])
    labels = anat.labels_from_fractions(fractions)
    del fractions
    mask = labels > 0
    if side is not None:
        half = _hemisphere_mask(shape, affine, float(plane_x if plane_x is not None else 0.0), side)
        mask &= half
        if crop:
            box = tuple(slice(int(ix.min()), int(ix.max()) + 1) for ix in np.nonzero(half))
            data, labels, mask = data[box], labels[box], mask[box]
            affine = affine.copy()
            affine[:3, 3] += affine[:3, :3] @ np.array([b.start for b in box], dtype=np.float64)
    out = Path(out_dir).resolve()
    item = {
        "image": str(save_nifti(data, affine, out / f"{subject_id}_T1w.nii.gz")),
        "mask": str(save_nifti(mask, affine, out / f"{subject_id}_{FILE_SUFFIXES['mask']}.nii.gz", dtype=np.uint8)),
        "label": str(save_nifti(labels, affine, out / f"{subject_id}_{FILE_SUFFIXES['label']}.nii.gz",
                                dtype=np.uint8)),
    }
    item["t1w"] = item["image"]
    item["subject"] = subject_id
    return item


def build_realistic_dataset(
    out_dir: str | os.PathLike,
    num_train: int = 8,
    num_val: int = 1,
    num_test: int = 2,
    spacing: float = 1.0,
    seed: int = 0,
    contrasts: Sequence[str] = ("t1w",),
    lesion: bool | float = False,
    lesion_splits: Sequence[str] = _SPLITS,
    holdout: str = "hemisphere",
    t1w: str | os.PathLike | None = None,
    t1w_masks: Sequence[str | os.PathLike] | None = None,
    anatomy_resolution_mm: float | None = None,
    write_real: bool = True,
    force: bool = False,
    **subject_kwargs: Any,
) -> Path:
    """Write realistic subjects and their MONAI datalist; returns the path of ``<out_dir>/datalist.json``.

    ``datalist.json`` = ``{"training": [...], "validation": [...], "test": [...], "real": [...], "metadata": {...}}``.
    Subject items are those of :func:`monai_inr.data.phantom.write_subject` plus ``"image"`` (= the T1w, or the
    first contrast when T1w is not written): ``{"image", "mask", "label", <one key per contrast>, "subject"}``, all
    absolute paths except ``subject``. ``"real"`` holds one item for the real scan (:func:`write_real_scan`, keys
    ``image``/``t1w``/``mask``/``label``/``subject``) when ``write_real``; with the hemisphere holdout,
    ``"real_training"`` holds the real scan's training (left) hemisphere, cropped, for training on real
    intensities. Labels: 0 background, 1 CSF, 2 GM, 3 WM,
    4 oedema, 5 tumour.

    Args:
        spacing: output voxel size (mm) over the source T1w's field of view (Colin27 ``ch2better``: 150.5 x 185 x
            158 mm, so 1 mm gives 151 x 185 x 158 voxels).
        seed: dataset seed; subject seeds as :func:`monai_inr.data.phantom.subject_seed` (disjoint per split).
        contrasts: image keys among :data:`~monai_inr.data.phantom.IMAGE_KEYS`.
        lesion, lesion_splits: as :func:`monai_inr.data.phantom.build_dataset`.
        holdout: ``"hemisphere"`` (training: left hemisphere mirrored; validation/test: right) or ``"none"``.
        t1w: a user T1w to build from instead of Colin27 (segmented with :func:`monai_inr.data.anatomy.segment_t1w`);
            ``t1w_masks`` its brain mask(s).
        anatomy_resolution_mm: resolution of the tissue segmentation (Colin27 default 0.5 mm when ``spacing`` < 1.5,
            else 1 mm; a user T1w default its own grid).
        write_real: also write the real scan (``"real"`` split).
        force: rebuild even when an up-to-date datalist exists.
        subject_kwargs: passed to :func:`~monai_inr.data.phantom.make_subject` (``deformation_mm``,
            ``bias_strength``, ``max_rotation_deg``, ...).

    Idempotent: when ``datalist.json`` records the same parameters and all its files exist, nothing is rebuilt.
    """
    counts = {"training": num_train, "validation": num_val, "test": num_test}
    for split, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InputError(f"the number of {split} subjects must be a non-negative integer, got {n!r}.")
    if num_train < 1:
        raise InputError(f"a dataset needs at least one training subject, got num_train={num_train}.")
    seed, spacing, keys = _check_args(seed, spacing, contrasts)
    if holdout not in HOLDOUTS:
        raise InputError(f"holdout must be one of {list(HOLDOUTS)}, got {holdout!r}.")
    frac = float(lesion)
    if not 0.0 <= frac <= 1.0:
        raise InputError(f"lesion must be a boolean or a fraction in [0, 1], got {lesion!r}.")
    bad = [s for s in lesion_splits if s not in _SPLITS]
    if bad:
        raise InputError(f"lesion_splits must name splits among {list(_SPLITS)}, got {bad}.")
    if t1w is None:
        files = anat.colin27_files()
        source, masks, real_image = files["t1w"], [files["bet"], files["t1w"]], files["head"]
        res = anatomy_resolution_mm if anatomy_resolution_mm is not None else (0.5 if spacing < 1.5 else 1.0)
    else:
        source = Path(t1w).resolve()
        if not source.is_file():
            raise InputError(f"{source}: the T1w to build realistic subjects from does not exist.")
        masks = [Path(m).resolve() for m in (t1w_masks or [])]
        real_image = source
        res = anatomy_resolution_mm
    res = None if res is None else float(res)

    out = Path(out_dir).resolve()
    path = out / "datalist.json"
    params = {"version": REALISTIC_VERSION, "num_train": int(num_train), "num_val": int(num_val),
              "num_test": int(num_test), "spacing": spacing, "seed": seed, "contrasts": list(keys), "lesion": frac,
              "lesion_splits": [s for s in _SPLITS if s in lesion_splits], "holdout": holdout,
              "source": str(source), "source_sha256": anat._sha256(Path(source)),
              "masks": [str(m) for m in masks], "anatomy_resolution_mm": res, "write_real": bool(write_real),
              "subject_kwargs": {k: subject_kwargs[k] for k in sorted(subject_kwargs)}}
    splits = (*_SPLITS, "real") if write_real else _SPLITS
    if write_real and holdout == "hemisphere":
        splits = (*splits, "real_training")
    if not force and current_datalist(path, params, splits) is not None:
        return path

    t0 = time.perf_counter()
    seg = anat.segment_t1w(source, masks=masks, resolution_mm=res)
    base = anat._anatomy(seg, source, "colin27" if t1w is None else "t1w",
                         f"{'Colin27 (ch2better, Debian mricron-data)' if t1w is None else Path(source).name}, "
                         f"Atropos tissue fractions at {seg.meta['options']['resolution_mm']:g} mm")
    plane = anat.midline_plane(base) if holdout == "hemisphere" else None
    out.mkdir(parents=True, exist_ok=True)
    datalist: dict[str, Any] = {s: [] for s in _SPLITS}
    subjects: dict[str, Any] = {}
    plane_x = None
    number = 0
    current_side, current = None, None
    for split in _SPLITS:
        side = SPLIT_HEMISPHERE[split] if holdout == "hemisphere" else None
        if side != current_side or current is None:
            current = None
            gc.collect()
            current = base if side is None else anat.hemisphere_anatomy(base, side, plane=plane)
            current_side = side
            if side is not None:
                plane_x = current.meta["mirror_plane_x_mm"]
        flags = lesion_flags(seed, split, counts[split], frac, params["lesion_splits"])
        for i in range(counts[split]):
            sid = f"sub-{number:04d}"
            number += 1
            s_seed = subject_seed(seed, split, i)
            subject = make_subject(s_seed, spacing=spacing, lesion=flags[i], contrasts=keys, anatomy=current,
                                   **subject_kwargs)
            item = write_subject(subject, out, sid)
            item = {"image": item["t1w"] if "t1w" in item else item[keys[0]], **item}
            datalist[split].append(item)
            subjects[sid] = {"split": split, "seed": s_seed, "lesion": flags[i], "hemisphere": side or "both"}
            del subject
    current = None
    if write_real:
        datalist["real"] = [write_real_scan(out / "real", real_image, seg,
                                            side="right" if holdout == "hemisphere" else None, plane_x=plane_x)]
        if holdout == "hemisphere":  # the real scan's training hemisphere, cropped: real intensities for training
            datalist["real_training"] = [write_real_scan(out / "real", real_image, seg, side="left", plane_x=plane_x,
                                                         subject_id="real-0000-left", crop=True)]
    datalist["metadata"] = {
        "name": "monai-inr realistic brain",
        "description": ("multi-contrast subjects from real individual anatomy (monai_inr.data.realistic): "
                        f"{base.description}; holdout {holdout}"),
        "labels": {str(v): k for k, v in LABELS.items()},
        "parameters": params,
        "segmentation": {k: seg.meta.get(k) for k in ("key", "options", "volumes_ml", "class_means")},
        "mirror_plane_x_mm": plane_x,
        "hemispheres": dict(SPLIT_HEMISPHERE) if holdout == "hemisphere" else None,
        "subjects": subjects,
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    _write_json(datalist, path)
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    """``python -m monai_inr.data.realistic --output_dir DIR [--num_train N ... --t1w T1W.nii.gz]``."""
    parser = argparse.ArgumentParser(
        prog="python -m monai_inr.data.realistic",
        description="Build realistic multi-contrast subjects from real anatomy (Colin27 or a T1w) and a datalist.",
    )
    parser.add_argument("--output_dir", "--out_dir", dest="output_dir", required=True,
                        help="output folder (NIfTI files and datalist.json)")
    parser.add_argument("--num_train", type=int, default=8)
    parser.add_argument("--num_val", type=int, default=1)
    parser.add_argument("--num_test", type=int, default=2)
    parser.add_argument("--spacing", type=float, default=1.0, help="voxel size in mm")
    parser.add_argument("--contrasts", nargs="+", default=["t1w"], choices=list(IMAGE_KEYS))
    parser.add_argument("--lesion", type=float, default=0.0, help="fraction of subjects with a tumour (0-1)")
    parser.add_argument("--lesion_splits", nargs="+", default=list(_SPLITS), choices=list(_SPLITS))
    parser.add_argument("--holdout", default="hemisphere", choices=list(HOLDOUTS))
    parser.add_argument("--t1w", default=None, help="a T1w NIfTI to use instead of Colin27")
    parser.add_argument("--t1w_masks", nargs="+", default=None, help="brain mask(s) of --t1w")
    parser.add_argument("--anatomy_resolution_mm", type=float, default=None)
    parser.add_argument("--no_real", action="store_true", help="do not write the real scan ('real' split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild even if an up-to-date datalist exists")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        path = build_realistic_dataset(
            args.output_dir, num_train=args.num_train, num_val=args.num_val, num_test=args.num_test,
            spacing=args.spacing, seed=args.seed, contrasts=args.contrasts, lesion=args.lesion,
            lesion_splits=args.lesion_splits, holdout=args.holdout, t1w=args.t1w, t1w_masks=args.t1w_masks,
            anatomy_resolution_mm=args.anatomy_resolution_mm, write_real=not args.no_real, force=args.force)
    except InputError as e:
        parser.exit(2, f"error: {e}\n")
    print(f"{path} ({time.perf_counter() - t0:.1f} s)")
    return path


if __name__ == "__main__":
    main()
