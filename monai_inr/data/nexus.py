"""Nexus-INR data: BraTS-like synthetic subjects and a BraTS2020 datalist builder, both degraded to the paper's grids.

Zhang et al., "Nexus-INR", arXiv:2508.03073, 2025, section 4.1: BraTS2020 volumes zero-padded to 240 x 240 x 160,
T1w down-sampled along z to 240 x 240 x 80 (x2) and T2w along y to 240 x 60 x 160 (x4). Here both modalities are
degraded by :class:`monai_inr.transforms.ThickSliceAcquisition` (box slice profile by default: every LR slice is the
mean of the ``factor`` HR voxels it covers, contiguous slices), so the LR scans keep the HR field of view and carry
affines with the thick spacing.

Before degradation the HR volumes are zero-padded (centred, affine shifted) so that every thick-slice axis is a
multiple of its factor: LR slices then cover whole HR voxels, and the training patch sampler can cut LR and HR
patches over exactly the same field of view (the paper's zero-padding to 240 x 240 x 160 serves the same purpose).

Labels (BraTS-like, on the HR grid): 0 background and healthy tissue, 1 tumour core, 2 oedema.

* synthetic brain (:mod:`monai_inr.data.phantom`): phantom label 5 (solid and necrotic tumour) -> 1, phantom label 4
  (oedema) -> 2, everything else (CSF, GM, WM, background) -> 0;
* BraTS2020: label 1 (necrotic / non-enhancing tumour core) and 4 (enhancing tumour) -> 1, label 2 (peritumoural
  oedema) -> 2.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from monai_inr import coords
from monai_inr.data.datalist import current_datalist, write_datalist
from monai_inr.errors import InputError
from monai_inr.io import read_nifti, save_nifti
from monai_inr.transforms import ThickSliceAcquisition

__all__ = [
    "build_nexus_dataset",
    "build_nexus_realistic_dataset",
    "build_brats_datalist",
    "phantom_to_nexus_labels",
    "brats_to_nexus_labels",
    "pad_for_slices",
    "degrade_pair",
    "NEXUS_LABELS",
    "NEXUS_KEYS",
]

#: Label values of the Nexus-INR datasets.
NEXUS_LABELS = {"background": 0, "tumour_core": 1, "oedema": 2}
#: Keys of a Nexus-INR datalist item (besides ``subject``).
NEXUS_KEYS = ("t1w", "t2w", "t1w_lr", "t2w_lr", "label", "mask")
_VERSION = 1


def phantom_to_nexus_labels(labels: np.ndarray) -> np.ndarray:
    """Phantom labels (0 bg, 1 CSF, 2 GM, 3 WM, 4 oedema, 5 tumour) -> 0 / 1 tumour core / 2 oedema."""
    lab = np.asarray(labels)
    out = np.zeros(lab.shape, dtype=np.uint8)
    out[lab == 5] = 1
    out[lab == 4] = 2
    return out


def brats_to_nexus_labels(seg: np.ndarray) -> np.ndarray:
    """BraTS labels (1 NCR/NET, 2 ED, 4 ET) -> 1 tumour core (1, 4) / 2 oedema (2) / 0."""
    s = np.rint(np.asarray(seg, dtype=np.float64)).astype(np.int64)
    bad = sorted(set(np.unique(s).tolist()) - {0, 1, 2, 4})
    if bad:
        raise InputError(f"unexpected BraTS label values {bad}: BraTS segmentations hold 0, 1, 2 and 4.")
    out = np.zeros(s.shape, dtype=np.uint8)
    out[(s == 1) | (s == 4)] = 1
    out[s == 2] = 2
    return out


def _integer_factors(
    slice_factors: Sequence[float], slice_axes: Sequence[int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    if len(slice_factors) != 2 or len(slice_axes) != 2:
        raise InputError(
            f"give two slice factors and two slice axes (T1w, T2w), got {list(slice_factors)} and {list(slice_axes)}."
        )
    f = []
    for v in slice_factors:
        if not (math.isfinite(float(v)) and float(v) >= 1 and abs(float(v) - round(float(v))) < 1e-9):
            raise InputError(f"slice factors must be integers >= 1 so that LR slices cover whole HR voxels, got {v!r}.")
        f.append(int(round(float(v))))
    a = [int(x) for x in slice_axes]
    if any(x not in (0, 1, 2) for x in a):
        raise InputError(f"slice axes must be 0, 1 or 2, got {list(slice_axes)}.")
    return (f[0], f[1]), (a[0], a[1])


def pad_for_slices(
    shape: Sequence[int], factors: Sequence[int], axes: Sequence[int], pad_shape: Sequence[int] | None = None
) -> list[tuple[int, int]]:
    """Centred zero padding ``[(before, after)] * 3`` making every slice axis a multiple of its factor(s).

    With ``pad_shape`` (e.g. the paper's 240 x 240 x 160) the volume is padded to that shape instead, which must be
    at least ``shape`` and a multiple of the factors on the slice axes.
    """
    need = [1, 1, 1]
    for f, a in zip(factors, axes):
        need[a] = need[a] * f // math.gcd(need[a], f)
    if pad_shape is not None:
        target = [int(n) for n in pad_shape]
        if len(target) != 3 or any(t < n for t, n in zip(target, shape)) or any(t % m for t, m in zip(target, need)):
            raise InputError(
                f"pad_shape {list(pad_shape)} must be at least the image shape {list(shape)} and a multiple of the "
                f"slice factors {need} per axis."
            )
    else:
        target = [int(math.ceil(n / m) * m) for n, m in zip(shape, need)]
    return [((t - n) // 2, (t - n) - (t - n) // 2) for t, n in zip(target, shape)]


def _pad(arr: np.ndarray, affine: np.ndarray, pads: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    out = np.pad(arr, pads, mode="constant")
    a = np.array(affine, dtype=np.float64)
    a[:3, 3] = np.asarray(coords.voxel_to_world(-np.asarray([p[0] for p in pads], np.float64), affine))
    return out, a


def degrade_pair(
    t1w: np.ndarray,
    t2w: np.ndarray,
    affine: np.ndarray,
    slice_factors: Sequence[float] = (2.0, 4.0),
    slice_axes: Sequence[int] = (2, 1),
    profile: str = "box",
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((t1w_lr, affine1), (t2w_lr, affine2))``: each modality acquired with thick slices along its own axis."""
    out = []
    for img, f, ax in zip((t1w, t2w), slice_factors, slice_axes):
        lr = ThickSliceAcquisition(axis=int(ax), factor=float(f), profile=profile)(np.asarray(img)[None], affine=affine)
        out.append((np.asarray(lr[0], dtype=np.float32), np.asarray(lr.affine, dtype=np.float64)))
    return out[0], out[1]


def _write_item(
    out: Path,
    sid: str,
    t1w: np.ndarray,
    t2w: np.ndarray,
    label: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    factors: tuple[int, int],
    axes: tuple[int, int],
    profile: str,
    spacing_mm: float,
    pad_shape: Sequence[int] | None = None,
) -> dict[str, str]:
    pads = pad_for_slices(t1w.shape, factors, axes, pad_shape)
    t1w, a = _pad(t1w, affine, pads)
    t2w, _ = _pad(t2w, affine, pads)
    label, _ = _pad(label, affine, pads)
    mask, _ = _pad(mask, affine, pads)
    (l1, a1), (l2, a2) = degrade_pair(t1w, t2w, a, factors, axes, profile)
    names = ("z", "y", "x")
    tag = [f"{names[2 - ax]}{f * spacing_mm:g}mm" for f, ax in zip(factors, axes)]
    item = {"subject": sid}
    item["t1w"] = str(save_nifti(t1w, a, out / f"{sid}_T1w.nii.gz"))
    item["t2w"] = str(save_nifti(t2w, a, out / f"{sid}_T2w.nii.gz"))
    item["t1w_lr"] = str(save_nifti(l1, a1, out / f"{sid}_acq-thick{tag[0]}_T1w.nii.gz"))
    item["t2w_lr"] = str(save_nifti(l2, a2, out / f"{sid}_acq-thick{tag[1]}_T2w.nii.gz"))
    item["label"] = str(save_nifti(label, a, out / f"{sid}_desc-tumour_dseg.nii.gz", dtype=np.uint8))
    item["mask"] = str(save_nifti(mask, a, out / f"{sid}_desc-brain_mask.nii.gz", dtype=np.uint8))
    return item


def _acquisition(slice_factors, slice_axes, profile: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """Validated ``(factors, axes)`` of the two thick-slice scans and their slice ``profile``."""
    factors, axes = _integer_factors(slice_factors, slice_axes)
    if profile not in ("box", "gaussian", "none"):
        raise InputError(f"profile must be 'box', 'gaussian' or 'none', got {profile!r}.")
    return factors, axes


def _metadata(name: str, factors, axes, profile: str, params: dict, **extra: Any) -> dict[str, Any]:
    """The ``metadata`` entry of a Nexus-INR datalist."""
    return {
        "name": name,
        "labels": {str(v): k for k, v in NEXUS_LABELS.items()},
        "degradation": f"ThickSliceAcquisition(profile={profile}): T1w x{factors[0]} along axis {axes[0]}, "
        f"T2w x{factors[1]} along axis {axes[1]}",
        "parameters": params,
        **extra,
    }


def build_nexus_dataset(
    out_dir: str | os.PathLike,
    num_train: int = 6,
    num_val: int = 1,
    num_test: int = 2,
    spacing: float = 1.0,
    slice_factors: Sequence[float] = (2.0, 4.0),
    slice_axes: Sequence[int] = (2, 1),
    profile: str = "box",
    lesion: bool | float = 1.0,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Write BraTS-like synthetic subjects with both anisotropic scans; return ``<out_dir>/datalist.json``.

    Every item: ``subject``; ``t1w``, ``t2w`` (HR ground truth, zero-padded so each slice axis is a multiple of its
    factor, see :func:`pad_for_slices`); ``t1w_lr`` (thick slices along ``slice_axes[0]``, default z, x2) and
    ``t2w_lr`` (along ``slice_axes[1]``, default y, x4); ``label`` (HR labels 0 / 1 tumour core / 2 oedema, from the
    phantom's 5 tumour and 4 oedema, :func:`phantom_to_nexus_labels`); ``mask`` (brain mask). Splits ``training``,
    ``validation``, ``test`` use the phantom's disjoint seed sets (training ``3i``, validation ``3i+1``, test ``3i+2``
    plus ``1e6 * seed``). ``lesion``: fraction of subjects with a tumour in every split (1.0: all, as in BraTS).
    Idempotent: an up-to-date datalist whose files all exist is reused (``force`` rebuilds).

    Raises:
        InputError: bad counts, non-integer slice factors or bad axes.
    """
    # imported on first use, like monai_inr.data does, so `python -m monai_inr.data.phantom` runs it as __main__ cleanly
    from monai_inr.data.phantom import PHANTOM_VERSION, lesion_flags, make_subject, subject_seed

    counts = {"training": num_train, "validation": num_val, "test": num_test}
    for split, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InputError(f"the number of {split} subjects must be a non-negative integer, got {n!r}.")
    if num_train < 1:
        raise InputError(f"a dataset needs at least one training subject, got num_train={num_train}.")
    factors, axes = _acquisition(slice_factors, slice_axes, profile)
    frac = float(lesion)
    if not 0.0 <= frac <= 1.0:
        raise InputError(f"lesion must be a boolean or a fraction in [0, 1], got {lesion!r}.")
    out = Path(out_dir).resolve()
    path = out / "datalist.json"
    params = {"version": _VERSION, "phantom": PHANTOM_VERSION, "num_train": int(num_train), "num_val": int(num_val),
              "num_test": int(num_test), "spacing": float(spacing), "slice_factors": list(factors),
              "slice_axes": list(axes), "profile": profile, "lesion": frac, "seed": int(seed)}
    if not force and current_datalist(path, params) is not None:
        return path
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {}
    subjects = {}
    number = 0
    for split in ("training", "validation", "test"):
        flags = lesion_flags(int(seed), split, counts[split], frac, ("training", "validation", "test"))
        doc[split] = []
        for i in range(counts[split]):
            sid = f"sub-{number:04d}"
            number += 1
            s_seed = subject_seed(int(seed), split, i)
            subj = make_subject(s_seed, spacing=float(spacing), lesion=flags[i], contrasts=["t1w", "t2w"])
            doc[split].append(
                _write_item(out, sid, subj.images["t1w"], subj.images["t2w"], phantom_to_nexus_labels(subj.labels),
                            subj.mask.astype(np.uint8), subj.affine, factors, axes, profile, float(spacing))
            )
            subjects[sid] = {"split": split, "seed": s_seed, "lesion": flags[i]}
    doc["metadata"] = _metadata("monai-inr synthetic BraTS-like T1w/T2w pairs for Nexus-INR", factors, axes, profile,
                                params, subjects=subjects)
    return write_datalist(doc, path)


def build_nexus_realistic_dataset(
    out_dir: str | os.PathLike,
    num_train: int = 6,
    num_val: int = 1,
    num_test: int = 2,
    spacing: float = 1.0,
    slice_factors: Sequence[float] = (2.0, 4.0),
    slice_axes: Sequence[int] = (2, 1),
    profile: str = "box",
    lesion: bool | float = 1.0,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """:func:`build_nexus_dataset` on realistic subjects: the real individual anatomy of
    :func:`monai_inr.data.realistic.build_realistic_dataset` (Colin27 by default; training subjects from one
    hemisphere, validation and test from the other, so test anatomy is never seen in training) instead of the
    population-average phantom. The HR T1w/T2w subjects (with tumour and oedema in a ``lesion`` fraction of them) are
    written under ``<out_dir>/hr``, their thick-slice scans, padded HR volumes, Nexus labels and masks under
    ``out_dir`` as in the synthetic set; returns ``<out_dir>/datalist.json`` (reused when up to date).

    Raises:
        InputError: as :func:`build_nexus_dataset`, or when the realistic anatomy is not installed.
    """
    import json

    from monai_inr.data.realistic import build_realistic_dataset

    factors, axes = _acquisition(slice_factors, slice_axes, profile)
    out = Path(out_dir).resolve()
    hr_path = build_realistic_dataset(out / "hr", num_train=num_train, num_val=num_val, num_test=num_test,
                                      spacing=spacing, seed=seed, contrasts=("t1w", "t2w"), lesion=lesion,
                                      write_real=False, force=force)
    hr_doc = json.loads(Path(hr_path).read_text(encoding="utf-8"))
    path = out / "datalist.json"
    params = {"version": _VERSION, "source": "realistic", "hr": hr_doc["metadata"].get("parameters"),
              "slice_factors": list(factors), "slice_axes": list(axes), "profile": profile,
              "spacing": float(spacing)}
    if not force and current_datalist(path, params) is not None:
        return path
    doc: dict[str, Any] = {}
    for split in ("training", "validation", "test"):
        doc[split] = []
        for item in hr_doc.get(split, []):
            t1w, affine = read_nifti(item["t1w"])
            t2w, _ = read_nifti(item["t2w"])
            labels, _ = read_nifti(item["label"])
            mask, _ = read_nifti(item["mask"])
            doc[split].append(
                _write_item(out, item["subject"], np.asarray(t1w, np.float32), np.asarray(t2w, np.float32),
                            phantom_to_nexus_labels(np.rint(labels)), (np.asarray(mask) > 0).astype(np.uint8),
                            affine, factors, axes, profile, float(spacing))
            )
    doc["metadata"] = _metadata("monai-inr realistic (real individual anatomy) T1w/T2w pairs for Nexus-INR", factors,
                                axes, profile, params, source=hr_doc["metadata"].get("name"))
    return write_datalist(doc, path)


def build_brats_datalist(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    num_val: int = 10,
    num_test: int = 15,
    seed: int = 0,
    slice_factors: Sequence[float] = (2.0, 4.0),
    slice_axes: Sequence[int] = (2, 1),
    profile: str = "box",
    pad_shape: Sequence[int] | None = (240, 240, 160),
    force: bool = False,
) -> dict[str, Any]:
    """A Nexus-INR datalist for a BraTS2020 folder, with the degraded scans written to ``out_dir``.

    Layout: ``root/BraTS20_Training_001/BraTS20_Training_001_{t1,t1ce,t2,flair,seg}.nii.gz`` (``.nii`` also
    accepted); ``t1`` is the T1w and ``t2`` the T2w modality (``t1ce`` and ``flair`` are not used). Per subject the
    HR volumes are zero-padded to ``pad_shape`` (paper: 240 x 240 x 160; ``None``: the smallest shape whose slice
    axes are multiples of the factors), the labels mapped by :func:`brats_to_nexus_labels`, the brain mask is
    ``t1 > 0`` (BraTS is skull-stripped with a zero background), and both modalities are degraded like the synthetic
    set. Split: the sorted subject ids are permuted with ``seed``; the first ``num_test`` are test, the next
    ``num_val`` validation, the rest training (paper: 48 / 10 / 15 of 73). Writes ``out_dir/datalist.json`` and
    returns the datalist; an up-to-date one is reused unless ``force``.

    Raises:
        InputError: no subject folders, a subject without t1, t2 or seg, a shape mismatch, unexpected label values,
            or too few subjects for the requested splits.
    """
    factors, axes = _integer_factors(slice_factors, slice_axes)
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"{base}: BraTS folder not found.")
    subjects = sorted(p.name for p in base.iterdir() if p.is_dir() and (p.name.startswith("BraTS")))
    if not subjects:
        raise InputError(f"{base}: no BraTS subject folders (BraTS20_Training_NNN) found.")
    if num_val < 0 or num_test < 0 or num_val + num_test >= len(subjects):
        raise InputError(
            f"{base}: {len(subjects)} subjects cannot give {num_test} test and {num_val} validation subjects and "
            f"keep at least one for training."
        )
    out = Path(out_dir).resolve()
    path = out / "datalist.json"
    params = {"version": _VERSION, "root": str(base.resolve()), "subjects": subjects, "num_val": int(num_val),
              "num_test": int(num_test), "seed": int(seed), "slice_factors": list(factors), "slice_axes": list(axes),
              "profile": profile, "pad_shape": list(pad_shape) if pad_shape is not None else None}
    if not force:
        doc = current_datalist(path, params)
        if doc is not None:
            return doc

    def find(sid: str, key: str) -> Path:
        for ext in (".nii.gz", ".nii"):
            p = base / sid / f"{sid}_{key}{ext}"
            if p.is_file():
                return p
        raise InputError(f"{base / sid}: missing {sid}_{key}.nii.gz.")

    order = [subjects[i] for i in np.random.default_rng(int(seed)).permutation(len(subjects))]
    split_of = {s: "test" for s in order[:num_test]}
    split_of.update({s: "validation" for s in order[num_test : num_test + num_val]})
    doc = {"training": [], "validation": [], "test": []}
    out.mkdir(parents=True, exist_ok=True)
    for sid in subjects:
        t1, a = read_nifti(find(sid, "t1"))
        t2, a2 = read_nifti(find(sid, "t2"))
        seg, a3 = read_nifti(find(sid, "seg"))
        if not (t1.shape == t2.shape == seg.shape) or t1.ndim != 3:
            raise InputError(f"{base / sid}: t1 {t1.shape}, t2 {t2.shape} and seg {seg.shape} must be 3D of one shape.")
        if not (np.allclose(a, a2, atol=1e-3) and np.allclose(a, a3, atol=1e-3)):
            raise InputError(f"{base / sid}: t1, t2 and seg have different affines.")
        t1 = np.asarray(t1, np.float32)
        spacing = float(coords.spacing_from_affine(a).min())
        item = _write_item(out, sid, t1, np.asarray(t2, np.float32), brats_to_nexus_labels(seg),
                           (t1 > 0).astype(np.uint8), a, factors, axes, profile, spacing, pad_shape)
        doc[split_of.get(sid, "training")].append(item)
    doc["metadata"] = {
        "name": "BraTS2020 T1w/T2w pairs for Nexus-INR",
        "labels": {str(v): k for k, v in NEXUS_LABELS.items()},
        "label_mapping": "BraTS 1 (NCR/NET), 4 (ET) -> 1 tumour core; 2 (ED) -> 2 oedema",
        "parameters": params,
    }
    write_datalist(doc, path)
    return doc
