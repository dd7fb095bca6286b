"""BIDS-derivative outputs: names, JSON sidecars with provenance, per-step logs, QC figures, and all-or-nothing writing.

Layout under a derivatives root (``--out``)::

    dataset_description.json                      DatasetType "derivative", GeneratedBy, DatasetLinks
    sub-01/anat/sub-01_acq-23Na_rec-nufft_desc-magnitude_TSC.nii.gz (+ .json)  reconstruction
    sub-01/anat/sub-01_acq-23Na_rec-nufft_desc-complex_TSC.nii.gz (+ .json)    optional complex image
    sub-01/anat/sub-01_acq-23Na_res-2p43_desc-upsampled_TSC.nii.gz (+ .json)   2x cubic-spline sodium
    sub-01/anat/sub-01_space-23Na_desc-preproc_T2w.nii.gz (+ .json)            registered T2w
    sub-01/anat/sub-01_from-T2w_to-23Na_mode-image_xfm.mat (+ .json)           ANTs transform (+ RAS matrix)
    sub-01/anat/sub-01_acq-23Na_desc-pad112_TSC.nii.gz, sub-01_space-23Na_desc-pad112_T2w.nii.gz (+ .json)
    sub-01/slices/sub-01_acq-23Na_desc-<plane><nnn>_TSC.npy, sub-01_space-23Na_desc-<plane><nnn>_T2w.npy
                                                                                normalised 2D slices
    sub-01/sub-01_desc-slices_index.json                                        slice list, min/max, lesion flag
    sub-01/figures/sub-01_desc-qc_overlay.png                                   T2w edges over sodium, 3 planes
    sub-01/sub-01_log.txt                                                       per-step log with start/end times

Names follow BIDS: ``sub-<label>``, the other entities in the specification's order, the suffix last
(:func:`bids_name`). BIDS defines no suffix for sodium images; they take the synthetic brain's ``TSC`` (tissue sodium
concentration, :mod:`monai_inr.data.phantom`) with ``acq-23Na`` marking the nucleus. ``Sources`` in every sidecar
lists BIDS URIs (:func:`bids_uri`): ``bids::sub-01/anat/...`` inside this derivative dataset, ``bids:raw:sub-01/...``
in the raw dataset, whose location ``dataset_description.json`` records under ``DatasetLinks``.

Every step writes into a hidden staging folder and moves its files into place only when all of them are complete;
existing results are never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from monai_inr.errors import InputError
from monai_inr.io import pid_alive, write_atomic, write_json_atomic

__all__ = [
    "PIPELINE_NAME",
    "subject_label",
    "bids_name",
    "ENTITY_ORDER",
    "SODIUM_SUFFIX",
    "bids_uri",
    "res_label",
    "subject_dir",
    "software_versions",
    "sha256_path",
    "geometry_dict",
    "write_json",
    "Staging",
    "remove_stale_staging",
    "ensure_absent",
    "step_log",
    "write_dataset_description",
    "qc_overlay",
]

PIPELINE_NAME = "sodium-preproc"
log = logging.getLogger("preprocessing")


def subject_label(subject: str) -> str:
    """``"01"``, ``"sub-01"`` -> ``"01"``; only letters and digits are allowed (BIDS label)."""
    s = str(subject)
    s = s[4:] if s.startswith("sub-") else s
    if not s or not s.isalnum():
        raise InputError(f"subject label {subject!r} must be letters and digits only (BIDS), e.g. 01.")
    return s


#: BIDS entity order: the specification's entity table (``sub`` ... ``desc``), with the transform entities
#: ``from``/``to``/``mode`` (fMRIPrep's ``sub-01_from-T1w_to-MNI_mode-image_xfm``) before ``desc``
ENTITY_ORDER = (
    "sub", "ses", "sample", "task", "tracksys", "acq", "nuc", "voi", "ce", "trc", "stain", "rec", "dir", "run", "mod",
    "echo", "flip", "inv", "mt", "part", "proc", "hemi", "space", "split", "recording", "chunk", "seg", "res", "den",
    "label", "from", "to", "mode", "desc",
)

#: suffix of the sodium images (BIDS has none for sodium; the synthetic brain's tissue sodium concentration)
SODIUM_SUFFIX = "TSC"


def bids_name(subject: str, *parts: str, ext: str = ".nii.gz", session: str | None = None) -> str:
    """A BIDS file name: ``sub-<label>``, the ``key-value`` entities of ``parts`` in :data:`ENTITY_ORDER`, and the one
    part without a ``-`` (the suffix) last, whatever the order of ``parts``.

    ``bids_name("01", "T2w", "space-23Na", "desc-preproc")`` -> ``sub-01_space-23Na_desc-preproc_T2w.nii.gz``.

    Raises:
        ValueError: no suffix or more than one, an entity that BIDS does not define, an entity given twice, or a label
            or suffix that is not letters and digits.
    """
    entities: dict[str, str] = {"sub": subject_label(subject)}
    if session:
        entities["ses"] = str(session)
    suffixes = []
    for part in (p for p in parts if p):
        key, sep, value = str(part).partition("-")
        if not sep:
            suffixes.append(key)
            continue
        if key not in ENTITY_ORDER:
            raise ValueError(f"{part!r}: {key!r} is not a BIDS entity ({', '.join(ENTITY_ORDER)}).")
        if key in entities:
            raise ValueError(f"the BIDS entity {key!r} is given twice ({entities[key]!r} and {value!r}).")
        entities[key] = value
    if len(suffixes) != 1:
        raise ValueError(f"a BIDS name needs exactly one suffix (a part without '-'), got {suffixes} in {parts}.")
    for label in [*entities.values(), suffixes[0]]:
        if not label or not label.isalnum():
            raise ValueError(f"BIDS labels and suffixes are letters and digits only, got {label!r}.")
    items = [f"{k}-{entities[k]}" for k in ENTITY_ORDER if k in entities]
    return "_".join(items + suffixes) + ext


def bids_uri(path: str | os.PathLike, root: str | os.PathLike, links: dict[str, str]) -> str:
    """The BIDS URI of ``path`` as seen from the dataset at ``root``.

    * inside ``root``: ``bids::<path relative to root>``;
    * inside another BIDS dataset (the folder above the path's ``sub-<label>`` component, e.g. the raw data):
      ``bids:<name>:<relative path>``, with ``name`` (``raw``, ``raw2``, ...) mapped in ``links`` to that folder,
      relative to ``root`` (what ``DatasetLinks`` in ``dataset_description.json`` records);
    * anywhere else: a ``file://`` URI of the absolute path.
    """
    p, r = Path(path).absolute(), Path(root).absolute()
    try:
        return "bids::" + p.relative_to(r).as_posix()
    except ValueError:
        pass
    parts = p.parts
    for i in range(1, len(parts)):
        if parts[i].startswith("sub-"):
            target = Path(os.path.relpath(Path(*parts[:i]), r)).as_posix()
            name = next((k for k, v in links.items() if v == target), None)
            if name is None:
                name = "raw" if "raw" not in links else f"raw{len(links) + 1}"
                links[name] = target
            return f"bids:{name}:{Path(*parts[i:]).as_posix()}"
    return p.as_uri()


def res_label(spacing_mm: Iterable[float]) -> str:
    """BIDS ``res-`` label from the largest voxel edge, e.g. (2.4286, 2.4286, 2.375) -> ``2p43``."""
    return f"{float(np.max(list(spacing_mm))):.2f}".replace(".", "p")


def subject_dir(root: str | os.PathLike, subject: str) -> Path:
    return Path(root) / f"sub-{subject_label(subject)}"


def software_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of the libraries a result depends on (only those importable)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("numpy", "scipy", "nibabel", "pynufft", "finufft", "antspyx", "itk", "h5py", "monai-inr", *extra):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def sha256_path(path: str | os.PathLike) -> str:
    """SHA-256 of a file, or of a directory's files (sorted names and contents)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def geometry_dict(shape, affine: np.ndarray) -> dict:
    """Shape, spacing, origin and direction (RAS) of a grid, for sidecars."""
    a = np.asarray(affine, dtype=np.float64)
    sp = np.linalg.norm(a[:3, :3], axis=0)
    return {
        "shape": [int(n) for n in shape],
        "spacing_mm": sp.round(6).tolist(),
        "origin_mm": a[:3, 3].round(6).tolist(),
        "direction_ras": (a[:3, :3] / sp[None, :]).round(8).tolist(),
        "affine_ras": a.round(6).tolist(),
    }


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically (:func:`monai_inr.io.write_json_atomic`: strict JSON, temporary name, then rename)."""
    return write_json_atomic(path, obj)


def ensure_absent(paths: Iterable[Path], overwrite: bool, out_root: Path, step: str) -> None:
    """Refuse to run a step whose results already exist (unless ``overwrite``): one sentence naming the folder."""
    if overwrite:
        return
    for p in paths:
        if Path(p).exists():
            raise InputError(
                f"{out_root}: the output directory already holds {step} results ({Path(p).name}); "
                f"pass --overwrite to replace them."
            )


def remove_stale_staging(root: str | os.PathLike) -> list[Path]:
    """Delete the staging folders (``.staging-<pid>-<step>-*``) that killed runs left in ``root``; folders of live
    processes (a concurrent run) are kept."""
    removed = []
    for d in Path(root).glob(".staging-*"):
        pid = d.name.split("-")[1] if d.name.count("-") >= 2 else ""
        if d.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


class Staging:
    """All-or-nothing writing of a step's files.

    ``stage.path(final)`` gives a temporary path for ``final`` inside a hidden folder of ``root``; :meth:`commit` moves
    every staged file (or folder) to its final place; leaving the ``with`` block by an exception removes the staging
    folder and leaves the existing outputs untouched.
    """

    def __init__(self, root: str | os.PathLike, step: str, overwrite: bool = False):
        self.root = Path(root)
        self.step = step
        self.overwrite = overwrite
        self.root.mkdir(parents=True, exist_ok=True)
        for stale in remove_stale_staging(self.root):
            log.info("removed the staging folder of an interrupted run: %s", stale)
        self.dir = Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-{step}-", dir=self.root))
        self._map: dict[Path, Path] = {}

    def path(self, final: str | os.PathLike) -> Path:
        final = Path(final)
        rel = final.relative_to(self.root) if final.is_absolute() or str(final).startswith(str(self.root)) else final
        tmp = self.dir / rel
        tmp.parent.mkdir(parents=True, exist_ok=True)
        self._map[tmp] = self.root / rel
        return tmp

    def commit(self) -> list[Path]:
        finals = list(self._map.values())
        ensure_absent(finals, self.overwrite, self.root, self.step)
        done = []
        for tmp, final in self._map.items():
            if not tmp.exists():
                continue
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.is_dir() and tmp.is_dir():
                shutil.rmtree(final)
            os.replace(tmp, final)
            done.append(final)
        shutil.rmtree(self.dir, ignore_errors=True)
        return done

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)
        return False


@contextlib.contextmanager
def step_log(log_path: str | os.PathLike, step: str, level: int = logging.INFO) -> Iterator[logging.Logger]:
    """Append the package's log records of one step to ``log_path`` between START/END lines with times and status."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level)
    root = logging.getLogger("preprocessing")
    old_level = root.level
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    t0 = time.perf_counter()
    now = _dt.datetime.now().isoformat(timespec="seconds")
    root.info("START %s at %s (command: %s)", step, now, " ".join(sys.argv) or "python")
    try:
        yield root
    except BaseException as e:
        root.error("FAILED %s after %.2f s: %s", step, time.perf_counter() - t0, e)
        raise
    else:
        end = _dt.datetime.now().isoformat(timespec="seconds")
        root.info("END %s at %s (%.2f s)", step, end, time.perf_counter() - t0)
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()


def write_dataset_description(
    root: str | os.PathLike, stage: Staging | None = None, links: dict[str, str] | None = None
) -> Path:
    """``dataset_description.json`` of the derivatives root (written once, through ``stage`` when given). ``links``
    (``DatasetLinks`` of the BIDS URIs in the sidecars, :func:`bids_uri`) are added to an existing description that
    lacks them (an atomic rewrite; nothing else in it changes)."""
    path = Path(root) / "dataset_description.json"
    if path.exists():
        if links:
            desc = json.loads(path.read_text(encoding="utf-8"))
            merged = {**desc.get("DatasetLinks", {}), **links}
            if merged != desc.get("DatasetLinks"):
                write_json({**desc, "DatasetLinks": merged}, path)
        return path
    desc = {
        "Name": "Sodium MRI preprocessing (NUFFT reconstruction, T2w registration, ArRFR slice dataset)",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": PIPELINE_NAME, "Version": software_versions().get("monai-inr", "dev"),
                         "Description": "python -m preprocessing (monai-inr)"}],
    }
    if links:
        desc["DatasetLinks"] = dict(links)
    return write_json(desc, stage.path(path) if stage is not None else path)


def _canonical(vol: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorient to the closest RAS axes (for display); returns the array and the spacing per axis."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)  # row i: (output axis of input axis i, flip)
    out = nib.orientations.apply_orientation(vol, ornt)
    sp_out = np.empty(3)
    sp_out[ornt[:, 0].astype(int)] = np.linalg.norm(affine[:3, :3], axis=0)
    return out, sp_out


def qc_overlay(
    background: np.ndarray, overlay: np.ndarray, affine: np.ndarray, path: str | os.PathLike, title: str = ""
) -> Path:
    """Tri-planar QC PNG: ``background`` (sodium) in grey with iso-contours of ``overlay`` (registered T2w),
    through the background's centre of mass, in RAS display orientation. Written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from scipy import ndimage

    bg, sp = _canonical(np.asarray(background, np.float32), affine)
    ov, _ = _canonical(np.asarray(overlay, np.float32), affine)
    com = np.asarray(ndimage.center_of_mass(np.clip(bg, 0, None))) if bg.max() > 0 else np.asarray(bg.shape) / 2
    com = np.nan_to_num(com, nan=0).round().astype(int).clip(0, np.asarray(bg.shape) - 1)
    vmax = np.percentile(bg, 99.5) if bg.max() > 0 else 1.0
    top = float(np.percentile(ov[ov > 0], 99)) if np.any(ov > 0) else 1.0
    levels = [0.25 * top, 0.6 * top]
    views = [("sagittal", 0, (1, 2)), ("coronal", 1, (0, 2)), ("axial", 2, (0, 1))]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, (name, axis, (h, v)) in zip(axes, views):
        b = np.take(bg, com[axis], axis=axis).T
        o = ndimage.gaussian_filter(np.take(ov, com[axis], axis=axis).T, 0.7)
        extent = (0, bg.shape[h] * sp[h], 0, bg.shape[v] * sp[v])
        ax.imshow(b, cmap="gray", origin="lower", vmin=0, vmax=vmax, extent=extent, interpolation="nearest")
        if o.max() > levels[0]:
            ax.contour(o, levels=levels, colors=["orange", "red"], linewidths=0.8, origin="lower", extent=extent)
        ax.set_title(f"{name} ({'RAS'[axis]} index {com[axis]})", fontsize=9)
        ax.set_axis_off()
    fig.suptitle(title or "QC: registered T2w contours (25 % orange, 60 % red) over sodium", fontsize=10)
    fig.tight_layout()
    try:
        return write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))
    finally:
        plt.close(fig)
