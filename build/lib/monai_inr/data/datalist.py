"""MONAI-style datalists (``{"training": [...], "validation": [...], "test": [...]}``) for a user's NIfTI folder.

The split is reproducible: subjects are sorted by id, then a ``numpy.random.default_rng(seed)`` permutation picks the
test and validation subjects, so the result does not depend on the order in which the filesystem lists files.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from monai_inr.errors import InputError
from monai_inr.io import write_json_atomic

__all__ = ["build_folder_datalist", "current_datalist", "load_datalist", "select_keys", "split_ids", "write_datalist"]

_NIFTI_EXT = re.compile(r"\.nii(\.gz)?$", re.IGNORECASE)


def _glob_to_id_regex(pattern: str) -> re.Pattern:
    """Regex for a file-name glob whose wildcards together form the subject id (``*_T1w.nii.gz`` -> the prefix)."""
    parts = re.split(r"(\*|\?|\[[^\]]*\])", pattern)
    out = []
    for part in parts:
        if part == "*":
            out.append("(.*?)")
        elif part == "?":
            out.append("(.)")
        elif part.startswith("[") and part.endswith("]") and len(part) > 2:
            out.append("(" + fnmatch.translate(part)[4:-3] + ")")
        else:
            out.append(re.escape(part))
    return re.compile("^" + "".join(out) + "$")


def _subject_id(name: str, regex: re.Pattern | None, glob_regex: re.Pattern | None) -> str | None:
    if regex is not None:
        m = regex.search(name)
        if not m:
            return None
        if "id" in regex.groupindex:
            return m.group("id")
        return m.group(1) if regex.groups else m.group(0)
    if glob_regex is not None:
        m = glob_regex.match(name)
        if m and glob_regex.groups:
            sid = "".join(g for g in m.groups() if g)
            sid = _NIFTI_EXT.sub("", sid).strip("_-.")
            if sid:
                return sid
    return _NIFTI_EXT.sub("", name)


def _find(folder: Path, pattern: str) -> list[Path]:
    files = [p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith(".") and ".partial" not in p.name]
    return sorted(files)


def split_ids(ids: Sequence[str], val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
              ) -> dict[str, list[str]]:
    """Split subject ids reproducibly: sort, seeded permutation, ``round(fraction * n)`` test then validation ids.

    At least one id stays in training (validation, then test, are shrunk if needed); each split is returned sorted.
    """
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (isinstance(frac, (int, float)) and math.isfinite(frac) and 0.0 <= frac < 1.0):
            raise InputError(f"{name} must be a number in [0, 1), got {frac!r}.")
    if val_fraction + test_fraction >= 1.0:
        raise InputError(f"val_fraction + test_fraction must be below 1 so that training keeps subjects, got "
                         f"{val_fraction} + {test_fraction}.")
    ids = sorted(set(ids))
    n = len(ids)
    if n == 0:
        raise InputError("no subjects to split.")
    n_test = int(math.floor(test_fraction * n + 0.5))
    n_val = int(math.floor(val_fraction * n + 0.5))
    while n_test + n_val > n - 1:
        if n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    order = np.random.default_rng(seed).permutation(n)
    test = sorted(ids[i] for i in order[:n_test])
    val = sorted(ids[i] for i in order[n_test:n_test + n_val])
    train = sorted(ids[i] for i in order[n_test + n_val:])
    return {"training": train, "validation": val, "test": test}


def current_datalist(
    path: str | os.PathLike, params: Mapping[str, Any], splits: Sequence[str] = ("training", "validation", "test")
) -> dict | None:
    """The generated datalist at ``path`` if it was built with ``params`` (its ``metadata.parameters``) and every file
    it names in ``splits`` exists, else ``None``: what the dataset builders check before rebuilding."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if doc.get("metadata", {}).get("parameters") != params:
        return None
    for split in splits:
        for item in doc.get(split, []):
            if not all(Path(v).is_file() for k, v in item.items() if k != "subject"):
                return None
    return doc


def write_datalist(datalist: Mapping[str, Any], output_file: str | os.PathLike) -> Path:
    """Write a datalist as JSON atomically (:func:`monai_inr.io.write_json_atomic`)."""
    return write_json_atomic(output_file, datalist)


def build_folder_datalist(
    folder: str | os.PathLike,
    pattern: str | Mapping[str, str] = "*.nii*",
    key: str = "image",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    output_file: str | os.PathLike | None = None,
    subject_regex: str | None = None,
    on_missing: str = "skip",
) -> dict[str, list[dict[str, str]]]:
    """A MONAI datalist for a folder of NIfTI volumes, split reproducibly into training / validation / test.

    Args:
        folder: the folder to search (``pattern`` may contain ``**/`` to recurse).
        pattern: a file-name glob (one item per file, stored under ``key``), or a mapping ``{key: glob}`` to pair
            several contrasts per subject, e.g. ``{"t1w": "*_T1w.nii.gz", "t2w": "*_T2w.nii.gz"}``.
        key: the item key of the single-pattern form.
        val_fraction, test_fraction: fractions of subjects (rounded) for validation and test; training keeps at
            least one subject.
        seed: seed of the split permutation.
        output_file: where to write the datalist JSON (atomically); not written when None.
        subject_regex: regex applied to each file name giving the subject id (named group ``id``, else group 1, else
            the whole match). By default the text matched by the glob's wildcards is the id (``sub-01`` for
            ``sub-01_T1w.nii.gz`` and ``*_T1w.nii.gz``); single-pattern default: the file name without extension.
        on_missing: with several contrasts, ``"skip"`` (warn) or ``"error"`` for subjects lacking one of them.

    Returns:
        ``{"training": [...], "validation": [...], "test": [...]}``, items ``{key: absolute path, ..., "subject": id}``.

    Raises:
        InputError: missing or empty folder, nothing matches, ambiguous ids, bad fractions, incomplete subjects.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: folder not found.")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder.")
    patterns = {key: pattern} if isinstance(pattern, str) else dict(pattern)
    if not patterns:
        raise InputError("pattern must be a glob or a non-empty mapping {key: glob}.")
    if on_missing not in ("skip", "error"):
        raise InputError(f"on_missing must be 'skip' or 'error', got {on_missing!r}.")
    regex = re.compile(subject_regex) if subject_regex else None
    paired = len(patterns) > 1 or not isinstance(pattern, str)

    found: dict[str, dict[str, str]] = {}
    for k, pat in patterns.items():
        files = _find(folder, pat)
        if not files:
            raise InputError(f"{folder}: no files match {pat!r}.")
        glob_regex = _glob_to_id_regex(Path(pat).name) if paired else None
        for f in files:
            sid = _subject_id(f.name, regex, glob_regex)
            if sid is None:
                continue
            if f.parent != folder:  # recursive search: keep sub-folders apart (BraTS-style folder per subject)
                sub = f.parent.relative_to(folder).as_posix()
                sid = sub if f.parent.name == sid else f"{sub}/{sid}"
            entry = found.setdefault(sid, {})
            if k in entry:
                raise InputError(f"{folder}: subject id {sid!r} matches two files for {k!r} ({Path(entry[k]).name} and "
                                 f"{f.name}); give a subject_regex that tells them apart.")
            entry[k] = str(f.resolve())
    if not found:
        raise InputError(f"{folder}: no file name matches subject_regex {subject_regex!r}.")

    incomplete = sorted(sid for sid, e in found.items() if len(e) < len(patterns))
    if incomplete:
        msg = (f"{folder}: {len(incomplete)} subject(s) lack some of {list(patterns)} "
               f"(e.g. {incomplete[0]!r} has only {sorted(found[incomplete[0]])}).")
        if on_missing == "error":
            raise InputError(msg)
        warnings.warn(msg + " They are left out.", stacklevel=2)
        for sid in incomplete:
            del found[sid]
        if not found:
            raise InputError(f"{folder}: no subject has all of {list(patterns)}.")

    splits = split_ids(list(found), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    datalist = {split: [{**{k: found[sid][k] for k in patterns}, "subject": sid} for sid in ids]
                for split, ids in splits.items()}
    if output_file is not None:
        write_datalist(datalist, output_file)
    return datalist


def load_datalist(path: str | os.PathLike, key: str = "training", base_dir: str | os.PathLike | None = None
                  ) -> list[dict]:
    """The items of one split of a datalist JSON, relative paths resolved against ``base_dir`` (default: its folder).

    A thin wrapper over :func:`monai.data.load_decathlon_datalist` with the project's error messages.
    """
    from monai.data import load_decathlon_datalist

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: datalist file not found.")
    try:
        return load_decathlon_datalist(path, is_segmentation=True, data_list_key=key, base_dir=base_dir)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e}).") from e
    except ValueError as e:
        raise InputError(f"{path}: has no {key!r} list.") from e


def select_keys(
    items: Sequence[Mapping[str, Any]],
    image_key: str | Mapping[str, str] = "image",
    keep: Sequence[str] = ("mask",),
) -> list[dict[str, Any]]:
    """Reduce datalist items to what a pipeline loads, renaming the chosen contrast to ``"image"``.

    ``select_keys(items, image_key="t1w")`` gives ``[{"image": item["t1w"], "mask": item["mask"]}, ...]`` (keys in
    ``keep`` are copied when present). ``image_key`` may be a mapping ``{source key: new key}`` to select and rename
    several contrasts, e.g. ``{"t1w": "image", "t2w": "reference"}``. Other keys (for instance a ``"label"`` path
    that a prepare-batch function would mistake for a target) are dropped. The input items are not modified.
    """
    mapping = {image_key: "image"} if isinstance(image_key, str) else dict(image_key)
    out = []
    for i, item in enumerate(items):
        missing = [k for k in mapping if k not in item]
        if missing:
            raise InputError(f"datalist item {i} has no {missing[0]!r} entry (it has {sorted(item)}).")
        new = {dst: item[src] for src, dst in mapping.items()}
        new.update({k: item[k] for k in keep if k in item and k not in new})
        out.append(new)
    return out
