"""The ArRFR dataset: simulated sodium + T2w subjects run through the project's clinical preprocessing.

:func:`build_sodium_dataset` uses this package's Python API (the same code as ``python -m
preprocessing simulate / run / datalist``) to make a small dataset when a bundle is first used without data:

1. ``simulate``: a synthetic brain (``monai_inr.data.phantom``; healthy or with a glioma-like lesion) is acquired with
   a density-adapted 3D radial sodium sequence (T2* decay, noise at the preset's white-matter SNR) and a misaligned
   T2w is written as the scanner would;
2. ``run``: NUFFT gridding reconstruction, 2x cubic-spline up-sampling, rigid ANTs registration of the T2w onto the
   sodium, zero-padding to ``cube``^3, per-volume min-max normalisation and slicing along the three planes;
3. the simulation truth (decay-free sodium concentration, tissue labels, motion-free T2w) is padded like the images
   and stored next to them (``sub-XX/truth/``) for the evaluation's reference metrics and ROI analysis;
4. ``datalist``: lesion subjects -> ``test``; healthy subjects split 3:1 into training and test by subject, a share
   of the training subjects -> ``validation``.

Presets: ``"tiny"`` (24^3 sodium at 9 mm -> 48^3 at 4.5 mm, ~15 s per subject; tests and the quick profile),
``"fast"`` (48^3 at 4.86 mm -> 96^3) and ``"paper"`` (56 x 56 x 38 at 4.8572 x 4.8572 x 4.75 mm -> 112 x 112 x 76,
padded to 112^3, the paper's geometry; about a minute per subject).

:func:`volume_entries` lists, for a datalist written by ``preprocessing datalist``, the padded 3D volumes of each
subject (and the truth files when present), which the evaluation reads.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from monai_inr.errors import InputError
from monai_inr.io import load_volume, read_nifti, save_nifti
from preprocessing.pipeline import StepPaths, run_all, run_simulate
from preprocessing.prepare import PrepareConfig, build_datalist, pad_or_crop
from preprocessing.registration import RegistrationConfig
from preprocessing.simulation import get_preset

__all__ = ["build_sodium_dataset", "volume_entries", "truth_paths", "TRUTH_KINDS"]

log = logging.getLogger(__name__)

#: simulation truth files kept for the evaluation (kind -> (raw "truth" key of ``run_simulate``, BIDS desc, dtype))
TRUTH_KINDS: dict[str, tuple[str, str, Any]] = {
    "truth": ("truth_conc", "conctruth", np.float32),
    "labels": ("truth_dseg", "dsegtruth", np.uint8),
    "t2w_truth": ("truth_t2w", "t2wtruth", np.float32),
}


def truth_paths(subject_dir: str | os.PathLike, cube: int) -> dict[str, Path]:
    """Padded truth files of one prepared subject: ``{"truth", "labels", "t2w_truth"}`` under ``sub-XX/truth/``."""
    d = Path(subject_dir)
    sub = d.name
    return {k: d / "truth" / f"{sub}_acq-23Na_desc-{desc}pad{cube}.nii.gz" for k, (_, desc, _) in TRUTH_KINDS.items()}


def build_sodium_dataset(
    out_dir: str | os.PathLike,
    num_healthy: int = 4,
    num_lesion: int = 1,
    preset: str = "tiny",
    cube: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.34,
    simulation: dict | None = None,
    registration: dict | None = None,
) -> str:
    """Simulate, preprocess and list a sodium + T2w dataset under ``out_dir`` (idempotent); return the datalist path.

    Args:
        out_dir: dataset folder; ``raw/`` holds the simulated acquisitions, ``derivatives/`` the preprocessed subjects,
            ``derivatives/datalist.json`` the datalist (its presence marks a complete dataset: an existing one is
            returned unchanged).
        num_healthy, num_lesion: subjects without / with a glioma-like lesion (lesion subjects are test-only).
        preset: simulation preset of :mod:`preprocessing.simulation` (``"tiny"``, ``"fast"``, ``"paper"``).
        cube: edge of the padded cube (default: the up-sampled grid's largest axis; the paper's 112 for ``"paper"``).
        seed: base seed (subject ``i`` uses ``seed * 1000 + i``).
        val_fraction: share of the healthy training subjects moved to ``validation``.
        simulation, registration: overrides of :class:`preprocessing.simulation.SimulationConfig` and
            :class:`preprocessing.registration.RegistrationConfig` fields (e.g. fewer registration iterations in tests).
    """
    out = Path(out_dir)
    deriv = out / "derivatives"
    datalist = deriv / "datalist.json"
    if datalist.is_file():
        return str(datalist)
    if num_healthy < 1:
        raise InputError(
            f"the sodium dataset needs at least one healthy (training) subject, got num_healthy={num_healthy}."
        )
    config = get_preset(preset, **(simulation or {}))
    up_shape = [2 * int(n) for n in config.recon_shape]
    cube = int(cube) if cube is not None else (112 if preset == "paper" else max(up_shape))
    reg = RegistrationConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in (registration or {}).items()})
    raw_root = out / "raw"
    total = int(num_healthy) + int(num_lesion)
    for i in range(total):
        sub = f"{i + 1:02d}"
        lesion = i >= num_healthy
        log.info("sodium dataset: subject %s/%d (%s, preset %s)", sub, total, "lesion" if lesion else "healthy", preset)
        paths = run_simulate(raw_root, sub, config, seed=int(seed) * 1000 + i + 1, lesion=lesion, overwrite=True)
        res = run_all(paths["raw"], paths["t2w"], deriv, sub, registration=reg, prepare=PrepareConfig(cube=cube),
                      lesion=lesion, overwrite=True)
        _, ref_aff = load_volume(res["upsampled"])
        targets = truth_paths(deriv / f"sub-{sub}", cube)
        for kind, (raw_key, _, dtype) in TRUTH_KINDS.items():
            data, affine = read_nifti(paths[raw_key])
            if not np.allclose(affine, ref_aff, atol=1e-3):
                raise InputError(f"{paths[raw_key]}: the simulation truth is not on the up-sampled sodium grid.")
            arr, aff, _ = pad_or_crop(data, affine, cube)
            save_nifti(arr, aff, targets[kind], dtype=dtype)
    build_datalist(deriv, val_fraction=val_fraction, seed=seed)
    return str(datalist)


def _subject_dirs(datalist_path: Path, entries: list[dict]) -> dict[str, Path]:
    base = datalist_path.parent
    dirs: dict[str, Path] = {}
    for e in entries:
        p = Path(e["sodium"])
        p = p if p.is_absolute() else base / p
        dirs.setdefault(str(e.get("subject", p.parent.parent.name)), p.parent.parent)
    return dirs


def volume_entries(datalist: str | os.PathLike, split: str = "test") -> list[dict]:
    """Padded 3D volumes of every subject of ``split`` in a datalist written by ``preprocessing datalist``.

    Returns ``[{"subject", "lesion", "sodium", "t2w"[, "truth", "labels", "t2w_truth"]}]`` with absolute paths; the
    truth entries are present only where the files exist (simulated subjects).
    """
    path = Path(datalist)
    if not path.is_file():
        raise InputError(f"{path}: datalist not found.")
    with open(path) as fh:
        dl = json.load(fh)
    entries = dl.get(split) or []
    out = []
    for sub, folder in sorted(_subject_dirs(path, entries).items()):
        label = sub[4:] if sub.startswith("sub-") else sub
        index = folder / f"sub-{label}_desc-slices_index.json"
        if not index.is_file():
            raise InputError(f"{index}: slice index of {sub} not found (prepare the subject first).")
        with open(index) as fh:
            info = json.load(fh)
        cube = int(info["cube"])
        na, t2 = StepPaths(folder.parent, label).padded(cube)
        item: dict[str, Any] = {"subject": f"sub-{label}", "lesion": bool(info.get("lesion", False)),
                                "sodium": str(na), "t2w": str(t2)}
        for kind, p in truth_paths(folder, cube).items():
            if p.is_file():
                item[kind] = str(p)
        out.append(item)
    return out
