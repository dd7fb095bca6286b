"""Raw non-Cartesian k-space files: one documented layout, in HDF5 (``.h5``/``.hdf5``) or NumPy (``.npz``).

Layout (the same keys in both containers; see ``preprocessing/README.md``):

==============  ===========================  ======================================================================
key             shape / type                 meaning
==============  ===========================  ======================================================================
``kspace``      complex64 (C, S, N) or       samples per coil; ``(S, N)`` (or ``(M,)``) for one coil
                (C, M)
``trajectory``  float32 (S, N, 3) or (M, 3)  k-space position of each sample along the reconstruction array axes,
                                             in ``meta["trajectory_units"]`` (default ``1/cm``)
``dcf``         float (S, N) or (M,)         optional density-compensation weights (any scale; renormalised)
``times``       float (N,), (S, N) or (M,)   optional time of each sample after excitation (s)
``meta``        JSON string                  metadata: ``trajectory_units`` (``1/cm``, ``1/mm``, ``1/m``, or
                                             ``cycles/voxel`` = k x spacing, needs ``grid``), ``grid``
                                             (``shape``, ``spacing_mm``, ``direction``, ``isocenter_mm``: the
                                             intended reconstruction grid), ``te_s``, ``dwell_s``, ``trajectory``
                                             (design parameters, e.g. ``k0_per_cm``), ``subject``, ``nucleus``,
                                             free-form extras
==============  ===========================  ======================================================================

S = spokes (readouts), N = samples per spoke, C = coils, M = S x N. In HDF5 the arrays are root datasets and ``meta``
is a root attribute; in NPZ ``meta`` is a 0-d unicode array (no pickling needed to read it).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from monai_inr.errors import InputError
from monai_inr.io import write_atomic

__all__ = [
    "RawData", "read_raw", "read_raw_meta", "write_raw", "validate_raw", "check_trajectory_range", "FORMAT_VERSION",
]

FORMAT_VERSION = "1.0"
_UNITS_TO_PER_CM = {"1/cm": 1.0, "1/mm": 10.0, "1/m": 0.01}
_KEYS = ("kspace", "trajectory", "dcf", "times")
_ALIASES = {"kspace": ("kspace", "data"), "trajectory": ("trajectory", "k", "traj")}


@dataclass
class RawData:
    """In-memory raw acquisition (k always in 1/cm after :func:`read_raw`)."""

    kspace: np.ndarray
    trajectory: np.ndarray
    dcf: np.ndarray | None = None
    times: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else "raw data"

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """(S, N) for spoke-structured trajectories, (M,) for flat ones."""
        return tuple(self.trajectory.shape[:-1])

    @property
    def n_coils(self) -> int:
        return int(self.coil_data().shape[0])

    def coil_data(self) -> np.ndarray:
        """k-space data with an explicit leading coil axis: (C, *sample_shape)."""
        d = self.kspace
        return d[None] if d.ndim == len(self.sample_shape) else d

    def sample_times(self) -> np.ndarray | None:
        """Times broadcast to ``sample_shape`` (or None)."""
        if self.times is None:
            return None
        return np.broadcast_to(np.asarray(self.times, dtype=np.float64), self.sample_shape)


def _name(path) -> str:
    return str(path)


def validate_raw(raw: RawData, name: str | None = None) -> RawData:
    """Check shapes, units and finiteness; raise :class:`InputError` (one sentence naming the file) on bad input."""
    name = name or raw.name
    k = np.asarray(raw.trajectory)
    if k.ndim not in (2, 3) or k.shape[-1] != 3:
        raise InputError(f"{name}: the trajectory must have shape (spokes, samples, 3) or (M, 3), got {k.shape}.")
    if not np.issubdtype(k.dtype, np.floating) and not np.issubdtype(k.dtype, np.integer):
        raise InputError(f"{name}: the trajectory must be real-valued, got dtype {k.dtype}.")
    bad = int((~np.isfinite(k)).sum())
    if bad:
        raise InputError(f"{name}: the trajectory contains {bad} NaN or Inf values.")
    d = np.asarray(raw.kspace)
    samples = tuple(k.shape[:-1])
    if d.ndim == len(samples):
        per_coil = tuple(d.shape)
    elif d.ndim == len(samples) + 1:
        per_coil = tuple(d.shape[1:])
    else:
        per_coil = None
    if per_coil != samples:
        got = tuple(d.shape) if per_coil is None else per_coil
        raise InputError(
            f"{name}: trajectory/data length mismatch: the trajectory has {'x'.join(map(str, samples))} samples "
            f"but the k-space data have shape {'x'.join(map(str, got))} per coil."
        )
    bad = int((~np.isfinite(d)).sum())
    if bad:
        raise InputError(f"{name}: the k-space data contain {bad} NaN or Inf samples.")
    if not np.any(d):
        raise InputError(f"{name}: every k-space sample is 0 (no signal was recorded), nothing to reconstruct.")
    if not np.iscomplexobj(d):
        logging.getLogger("preprocessing").warning(
            "%s: the k-space data are real-valued (dtype %s): the phase was lost before saving, so the image will "
            "be wrong unless the data really are real; store complex samples.", name, d.dtype)
    if raw.dcf is not None:
        w = np.asarray(raw.dcf)
        if w.shape != samples:
            raise InputError(f"{name}: the DCF has shape {w.shape} but the trajectory has {samples} samples.")
        if not np.all(np.isfinite(w)) or (w < 0).any():
            raise InputError(f"{name}: the DCF contains negative, NaN or Inf weights.")
    if raw.times is not None:
        t = np.asarray(raw.times)
        try:
            np.broadcast_to(t, samples)
        except ValueError:
            raise InputError(
                f"{name}: sample times of shape {t.shape} do not match the trajectory's {samples}."
            ) from None
        if not np.all(np.isfinite(t)):
            raise InputError(f"{name}: the sample times contain NaN or Inf values.")
    return raw


def check_trajectory_range(k_cm: np.ndarray, spacing_mm, name: str, tol: float = 1e-4) -> None:
    """Raise :class:`InputError` when a sample lies outside the k-space range of a grid (``|k_a| > 1 / (2 dx_a)``)."""
    kmax_axis = 1.0 / (2.0 * np.asarray(spacing_mm, dtype=np.float64) / 10.0)
    reach = np.abs(np.asarray(k_cm, dtype=np.float64).reshape(-1, 3)).max(axis=0)
    ratio = reach / kmax_axis
    if (ratio > 1 + tol).any():
        a = int(np.argmax(ratio))
        raise InputError(
            f"{name}: the trajectory reaches |k| = {reach[a]:.4g} 1/cm on axis {a} but a "
            f"{float(np.asarray(spacing_mm)[a]):.4g} mm grid only represents up to {kmax_axis[a]:.4g} 1/cm "
            f"(outside the k-space range); reconstruct on a finer grid or check meta['trajectory_units']."
        )


def _to_per_cm(k: np.ndarray, meta: dict, name: str) -> np.ndarray:
    units = meta.get("trajectory_units", "1/cm")
    if units in _UNITS_TO_PER_CM:
        return np.asarray(k, dtype=np.float32) * np.float32(_UNITS_TO_PER_CM[units])
    if units == "cycles/voxel":
        grid = meta.get("grid") or {}
        if "spacing_mm" not in grid:
            raise InputError(f"{name}: trajectory_units 'cycles/voxel' needs meta['grid']['spacing_mm'].")
        return (np.asarray(k, dtype=np.float64) / (np.asarray(grid["spacing_mm"]) / 10.0)).astype(np.float32)
    raise InputError(
        f"{name}: unknown trajectory_units {units!r}; use one of "
        f"{', '.join(list(_UNITS_TO_PER_CM) + ['cycles/voxel'])}."
    )


def _get(container, key: str, keys) -> Any:
    for alias in _ALIASES.get(key, (key,)):
        if alias in keys:
            return container[alias]
    return None


def read_raw(path: str | os.PathLike) -> RawData:
    """Read and validate a raw file (HDF5 or NPZ by extension); the trajectory is returned in 1/cm."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: raw k-space file not found.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                keys = set(f.keys())
                arrays = {k: (None if (v := _get(f, k, keys)) is None else v[()]) for k in _KEYS}
                meta_raw = f.attrs.get("meta", "{}")
                if "meta" in keys:
                    meta_raw = f["meta"][()]
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                keys = set(f.files)
                arrays = {k: (None if (v := _get(f, k, keys)) is None else np.asarray(v)) for k in _KEYS}
                meta_raw = f["meta"][()] if "meta" in keys else "{}"
        else:
            raise InputError(f"{path}: unknown raw file type {suffix!r}; use .h5, .hdf5 or .npz.")
    except InputError:
        raise
    except Exception as e:  # h5py/numpy raise many types for corrupt files
        raise InputError(f"{path}: not a readable raw k-space file ({type(e).__name__}: {e}).") from e
    for key in ("kspace", "trajectory"):
        if arrays[key] is None:
            raise InputError(f"{path}: no '{key}' array in the file (expected the layout in preprocessing/README.md).")
    if isinstance(meta_raw, bytes):
        meta_raw = meta_raw.decode()
    try:
        meta = json.loads(str(meta_raw)) if meta_raw is not None else {}
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: the 'meta' entry is not valid JSON ({e}).") from e
    kspace = np.asarray(arrays["kspace"])
    if not np.iscomplexobj(kspace):
        if kspace.shape[-1] == 2 and kspace.ndim >= 2:  # (..., 2) real/imaginary pairs
            kspace = kspace[..., 0] + 1j * kspace[..., 1]
        else:
            kspace = kspace.astype(np.complex64)
    raw = RawData(
        kspace=kspace.astype(np.complex64, copy=False),
        trajectory=np.asarray(arrays["trajectory"]),
        dcf=None if arrays["dcf"] is None else np.asarray(arrays["dcf"], dtype=np.float64),
        times=None if arrays["times"] is None else np.asarray(arrays["times"], dtype=np.float64),
        meta=meta,
        path=path,
    )
    validate_raw(raw)
    raw.trajectory = _to_per_cm(raw.trajectory, meta, str(path))
    raw.meta["trajectory_units"] = "1/cm"
    return raw


def read_raw_meta(path: str | os.PathLike) -> dict:
    """Only the ``meta`` dictionary of a raw file (cheap; {} when absent or unreadable)."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                m = f["meta"][()] if "meta" in f else f.attrs.get("meta", "{}")
        else:
            with np.load(path, allow_pickle=False) as f:
                m = f["meta"][()] if "meta" in f.files else "{}"
        return json.loads(m.decode() if isinstance(m, bytes) else str(m))
    except Exception:
        return {}


def write_raw(raw: RawData, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``raw`` atomically (temporary name, then rename) as HDF5 or NPZ by extension."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: the file already exists; pass --overwrite to replace it.")
    validate_raw(raw, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(raw.meta)
    meta.setdefault("trajectory_units", "1/cm")
    meta.setdefault("format_version", FORMAT_VERSION)
    meta_json = json.dumps(meta, default=_json_default)
    arrays = {"kspace": np.asarray(raw.kspace, dtype=np.complex64),
              "trajectory": np.asarray(raw.trajectory, dtype=np.float32)}
    if raw.dcf is not None:
        arrays["dcf"] = np.asarray(raw.dcf, dtype=np.float32)
    if raw.times is not None:
        arrays["times"] = np.asarray(raw.times, dtype=np.float64)
    suffix = path.suffix.lower()
    if suffix not in (".h5", ".hdf5", ".npz"):
        raise InputError(f"{path}: unknown raw file type {suffix!r}; use .h5, .hdf5 or .npz.")

    def write(tmp: Path) -> None:
        if suffix == ".npz":
            with open(tmp, "wb") as fh:
                np.savez(fh, meta=np.array(meta_json), **arrays)
        else:
            import h5py

            with h5py.File(tmp, "w") as f:
                for key, arr in arrays.items():
                    f.create_dataset(key, data=arr)
                f.attrs["meta"] = meta_json
                f.attrs["layout"] = "monai-inr sodium raw k-space, see preprocessing/README.md"

    return write_atomic(path, write)


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
