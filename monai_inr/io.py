"""Reading and writing volumes with the project's error rules: one clear sentence naming the file, nothing half-written."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import nibabel as nib
import numpy as np

__all__ = [
    "InputError",
    "find_input_error",
    "install_error_hook",
    "read_nifti",
    "load_volume",
    "check_volume",
    "save_nifti",
    "atomic_path",
    "write_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "json_safe",
]


class InputError(ValueError):
    """Bad user input (file, image content, scale, memory budget, checkpoint): the message is one sentence."""


def find_input_error(exc: BaseException | None) -> InputError | None:
    """The first :class:`InputError` in an exception's cause/context chain (MONAI's config parser wraps errors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, InputError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def install_error_hook() -> None:
    """Print bad-input errors as one sentence (``error: ...``, exit status 1) instead of a chained traceback.

    Bundle configs call this first in ``initialize``: ``python -m monai.bundle run`` wraps every failure in its config
    resolver's ``RuntimeError``; the user needs the sentence that names the file and the problem. Other exceptions keep
    the default traceback.
    """
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        err = find_input_error(exc)
        if err is None:
            previous(exc_type, exc, tb)
            return
        print(f"error: {err}", file=sys.stderr)

    if getattr(sys.excepthook, "__name__", "") != "hook":
        sys.excepthook = hook


def check_volume(array: np.ndarray, name: str = "image", ndim: int = 3) -> np.ndarray:
    """Validate an image array (squeezing singleton channel/time axes) and return it as float32.

    Raises:
        InputError: wrong dimensionality, NaN/Inf voxels, or a constant image.
    """
    arr = np.asarray(array)
    while arr.ndim > ndim and arr.shape[0] == 1:
        arr = arr[0]
    while arr.ndim > ndim and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != ndim:
        raise InputError(f"{name}: expected a {ndim}D image but got {arr.ndim}D data of shape {tuple(arr.shape)}.")
    if min(arr.shape) < 2:
        raise InputError(f"{name}: every axis needs at least 2 voxels, got shape {tuple(arr.shape)}.")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{name}: expected real-valued intensities, got dtype {arr.dtype}.")
    arr = arr.astype(np.float32, copy=False)
    finite = np.isfinite(arr)
    if not finite.all():
        raise InputError(f"{name}: contains {int((~finite).sum())} NaN or Inf voxels.")
    if float(arr.max()) == float(arr.min()):
        raise InputError(f"{name}: the image is constant (every voxel is {float(arr.min()):g}), nothing to super-resolve.")
    return arr


def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Raw ``(data, 4x4 affine)`` of a NIfTI file, with one-sentence errors for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found.")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception as e:  # nibabel raises many types for corrupt files
        raise InputError(f"{path}: not a readable NIfTI image ({type(e).__name__}: {e}).") from e
    return data, np.asarray(img.affine, dtype=np.float64)


def read_volume_header(path: str | os.PathLike, name: str | None = None) -> tuple[tuple[int, int, int], np.ndarray]:
    """``(3D shape, 4x4 affine)`` from a NIfTI header alone (no voxel data read); trailing singleton axes are dropped.

    Raises:
        InputError: missing or unreadable file, or not a 3D volume; the sentence starts with ``name`` (default: the
            path).
    """
    label = name or str(path)
    if not Path(path).is_file():
        raise InputError(f"{label}: file not found.")
    try:
        img = nib.load(str(path))
    except Exception as e:  # nibabel raises many types for corrupt files
        raise InputError(f"{label}: not a readable NIfTI image ({type(e).__name__}).") from e
    shape = tuple(int(n) for n in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise InputError(f"{label}: expected a 3D image but got {len(shape)}D data of shape {tuple(img.shape)}.")
    return shape, np.asarray(img.affine, dtype=np.float64)  # type: ignore[return-value]


def load_volume(path: str | os.PathLike, ndim: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Load a NIfTI volume as ``(float32 array, 4x4 affine)`` after :func:`check_volume`.

    Raises:
        InputError: the file is missing or unreadable, or its content fails :func:`check_volume`.
    """
    data, affine = read_nifti(path)
    return check_volume(data, name=str(path), ndim=ndim), affine


def atomic_path(path: str | os.PathLike) -> tuple[Path, Path]:
    """A temporary sibling name for ``path`` (same suffixes, so writers pick the right format) and the final path."""
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".partial{suffix}", dir=path.parent)
    os.close(fd)
    return Path(tmp), path


def save_nifti(array: Any, affine: np.ndarray, path: str | os.PathLike, dtype=np.float32) -> Path:
    """Write a NIfTI file atomically (temporary name, then rename), with sform and qform set to ``affine``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    img = nib.Nifti1Image(np.asarray(array, dtype=dtype), np.asarray(affine, dtype=np.float64))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    tmp, final = atomic_path(path)
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return final


def _honour_umask(path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # mkstemp creates 0600


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(temporary path)`` and rename the result over ``path`` once complete.

    The temporary name comes from :func:`atomic_path` (unique per process and call, same suffixes, same folder), the
    file is fsync-ed before :func:`os.replace`, its mode honours the umask, and on any failure it is removed: readers
    see the old file or the new one, never a half-written one, and concurrent writers never share a temporary name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, final = atomic_path(path)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        _honour_umask(tmp)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return final


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically (:func:`write_atomic`)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)

    return write_atomic(path, write)


def json_safe(obj: Any) -> Any:
    """Plain-JSON version of ``obj``: numpy -> python, Path -> str, NaN/Inf -> None (strict JSON has neither)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_safe(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def json_text(doc: Any) -> str:
    """``doc`` as strict, indented JSON text (:func:`json_safe`), ending with a newline."""
    return json.dumps(json_safe(doc), indent=2, allow_nan=False) + "\n"


def write_json_atomic(path: str | os.PathLike, doc: Any) -> Path:
    """Write ``doc`` as strict JSON (:func:`json_text`) to ``path`` atomically (:func:`write_atomic`)."""
    return write_text_atomic(path, json_text(doc))
