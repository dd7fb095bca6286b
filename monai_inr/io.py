"""Every read and write of an image: one clear sentence naming the file on bad input, nothing half-written.

Reading: :func:`read_image` opens a NIfTI file or a DICOM series directory (ITK's GDCM reader, converted to the
project's (i, j, k) arrays and RAS affines) and returns the raw data and its affine; the one sentence for an unreadable
file is written once, in :func:`_open_nifti`. The loaders validate the content on that same read, so no input is read
twice:

* :func:`load_volume`: a 2D/3D volume (singleton channel/time axes squeezed), checked by :func:`check_volume`
  (dimensionality, real finite values, not constant) and, with ``require_geometry``, by :func:`check_geometry`
  (scanner geometry present, finite non-degenerate affine); optionally a required channel count;
* :func:`load_magnitude`: a 2D slice or 3D volume whose complex data (complex dtype or a last axis of 2) is refused or
  turned into its magnitude;
* :func:`read_image_geometry`: spatial shape, channels and affine of a 2D/3D image with channels;
* :func:`load_mask`: a binary mask on a given grid;
* :func:`read_volume_header`: shape and affine from the header alone (no voxel data);
* :class:`ScannerNiftiReader`: the reader the bundles give MONAI's ``LoadImaged``: MONAI's ``NibabelReader`` without
  its header "rectification" (which replaces a valid sform with a pixdim-derived affine when the ``pixdim`` field
  disagrees), with the missing/unreadable/degenerate-geometry sentences of this module.

Writing: :func:`save_nifti` (sform and qform set to the affine) through :func:`atomic_path` (temporary sibling name,
then rename).
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import nibabel as nib
import numpy as np
import torch
from monai.data.image_reader import NibabelReader
from scipy import ndimage

from monai_inr.coords import spacing_from_affine
from monai_inr.errors import InputError

__all__ = [
    "read_torch_file",
    "read_image",
    "read_nifti",
    "read_image_header",
    "read_dicom_series",
    "itk_to_array_affine",
    "is_dicom_dir",
    "read_volume_header",
    "ScannerNiftiReader",
    "check_volume",
    "check_values",
    "check_finite",
    "check_min_shape",
    "check_geometry",
    "has_scanner_geometry",
    "load_volume",
    "load_magnitude",
    "magnitude_geometry",
    "read_image_geometry",
    "load_mask",
    "foreground_mask",
    "output_names",
    "save_nifti",
    "nifti_image",
    "save_nifti_group",
    "write_atomic_group",
    "atomic_path",
    "pid_alive",
    "check_output_folder",
    "remove_stale_partials",
    "save_atomic",
    "write_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "json_safe",
]

log = logging.getLogger(__name__)
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


# ------------------------------------------------------------------------------------------------------ raw reads


def _unreadable(label: str, error: Exception) -> InputError:
    """The one sentence for a file nibabel cannot read."""
    return InputError(f"{label}: not a readable NIfTI image ({type(error).__name__}).")


def _voxels(img: Any, label: str) -> np.ndarray:
    """The voxel data of an opened image (a truncated file fails only here)."""
    try:
        return np.asarray(img.dataobj)
    except Exception as e:  # nibabel raises many types for corrupt files
        raise _unreadable(label, e) from e


def _open_nifti(path: str | os.PathLike, label: str | None = None, data: bool = True) -> tuple[Any, np.ndarray | None]:
    """``(nibabel image, voxel data or None)`` of a NIfTI file: the one place that says a file is missing or unreadable.

    Raises:
        InputError: ``"<label>: file not found."`` or ``"<label>: not a readable NIfTI image (<error type>)."``.
    """
    label = str(path) if label is None else label
    p = Path(str(path))
    if not p.is_file():
        raise InputError(f"{label}: file not found.")
    try:
        img = nib.load(str(p))
    except Exception as e:  # nibabel raises many types for corrupt files
        raise _unreadable(label, e) from e
    return img, (_voxels(img, label) if data else None)


def is_dicom_dir(path: str | os.PathLike) -> bool:
    """True for a directory (DICOM series input); files are read as NIfTI."""
    return Path(path).is_dir()


def _itk():
    import itk  # heavy optional dependency: only DICOM input needs it

    return itk


def itk_to_array_affine(image: Any) -> tuple[np.ndarray, np.ndarray]:
    """An ITK image -> ((i, j, k) float32 array, 4x4 RAS affine) (``affine_ras = diag(-1, -1, 1, 1) @ affine_lps``)."""
    itk = _itk()
    arr = itk.array_from_image(image).transpose(2, 1, 0).astype(np.float32)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    direction = np.asarray(itk.array_from_matrix(image.GetDirection()), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing[None, :]
    lps[:3, 3] = origin
    return arr, _LPS_TO_RAS @ lps


def read_dicom_series(path: str | os.PathLike, series_uid: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read one DICOM series from a directory with ITK's GDCM reader.

    ``ants.dicom_read`` is deliberately not used: it takes the geometry from whichever file ``os.listdir`` returns
    first and ignores ImagePositionPatient; ITK's GDCM series reader sorts slices by position and returns the LPS
    geometry, converted to RAS here.

    Returns the (i, j, k) float32 array, its RAS affine and a dict with the series UID, the number of files and the
    other series found. With several series in the directory the one with the most files is used (or ``series_uid``).

    Raises:
        InputError: missing directory, no DICOM series in it, or an unreadable series.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: DICOM series directory not found.")
    if not path.is_dir():
        raise InputError(f"{path}: expected a directory holding a DICOM series.")
    itk = _itk()
    try:
        names = itk.GDCMSeriesFileNames.New()
        names.SetUseSeriesDetails(True)
        names.SetDirectory(str(path))
        uids = list(names.GetSeriesUIDs())
    except Exception as e:  # ITK raises RuntimeError subclasses
        raise InputError(f"{path}: cannot scan the directory for DICOM files ({type(e).__name__}: {e}).") from e
    if not uids:
        raise InputError(f"{path}: no readable DICOM series found in the directory.")
    files_per_uid = {u: list(names.GetFileNames(u)) for u in uids}
    if series_uid is None:
        series_uid = max(uids, key=lambda u: len(files_per_uid[u]))
        if len(uids) > 1:
            log.warning("%s holds %d DICOM series; using %s (%d files).", path, len(uids), series_uid,
                        len(files_per_uid[series_uid]))
    elif series_uid not in files_per_uid:
        raise InputError(f"{path}: DICOM series {series_uid} is not in the directory (found {', '.join(uids)}).")
    files = files_per_uid[series_uid]
    if len(files) < 2:
        raise InputError(f"{path}: the DICOM series has only {len(files)} slice; a 3D volume needs at least 2.")
    try:
        image_type = itk.Image[itk.F, 3]
        reader = itk.ImageSeriesReader[image_type].New()
        reader.SetImageIO(itk.GDCMImageIO.New())
        reader.SetFileNames(files)
        reader.Update()
        image = reader.GetOutput()
    except Exception as e:
        raise InputError(f"{path}: the DICOM series could not be read ({type(e).__name__}: {e}).") from e
    arr, affine = itk_to_array_affine(image)
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{path}: the DICOM series contains NaN or Inf voxels.")
    return arr, affine, {"series_uid": series_uid, "n_files": len(files), "series_found": uids}


def read_image(path: str | os.PathLike, label: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Raw ``(data, 4x4 affine)`` of a NIfTI file or a DICOM series directory, with one-sentence errors."""
    if is_dicom_dir(path):
        arr, affine, _ = read_dicom_series(path)
        return arr, affine
    img, data = _open_nifti(path, label)
    return data, np.asarray(img.affine, dtype=np.float64)


def read_image_header(path: str | os.PathLike, label: str | None = None) -> tuple[tuple[int, ...], np.dtype, np.ndarray]:
    """``(shape, dtype, 4x4 affine)`` of a NIfTI file from its header alone (a DICOM series directory is read)."""
    if is_dicom_dir(path):
        arr, affine = read_image(path, label)
        return tuple(arr.shape), arr.dtype, affine
    img, _ = _open_nifti(path, label, data=False)
    return tuple(int(n) for n in img.shape), np.dtype(img.get_data_dtype()), np.asarray(img.affine, dtype=np.float64)


def read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Raw ``(data, 4x4 affine)`` of a NIfTI file, with one-sentence errors for a missing or unreadable file."""
    img, data = _open_nifti(path)
    return data, np.asarray(img.affine, dtype=np.float64)


def _check_channels(img: Any, label: str, channels: int | None) -> None:
    """The channel count (4th axis) of a NIfTI header against what the network expects."""
    if channels is None:
        return
    shape = img.shape
    found = int(shape[3]) if len(shape) == 4 else 1
    if len(shape) in (3, 4) and found != int(channels):
        raise InputError(
            f"{label}: has {found} channels but the network expects {int(channels)} per modality "
            f"(mismatched channel counts)."
        )


def read_volume_header(
    path: str | os.PathLike, name: str | None = None, require_geometry: bool = False, channels: int | None = None
) -> tuple[tuple[int, int, int], np.ndarray]:
    """``(3D shape, 4x4 affine)`` from a NIfTI header alone (no voxel data read); trailing singleton axes are dropped.

    Raises:
        InputError: missing or unreadable file, a channel count other than ``channels``, not a 3D volume, or
            (``require_geometry``) missing or degenerate geometry (:func:`check_geometry`); the sentence starts with
            ``name`` (default: the path).
    """
    label = name or str(path)
    img, _ = _open_nifti(path, label, data=False)
    _check_channels(img, label, channels)
    shape = tuple(int(n) for n in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise InputError(f"{label}: expected a 3D image but got {len(shape)}D data of shape {tuple(img.shape)}.")
    affine = np.asarray(img.affine, dtype=np.float64)
    if require_geometry:
        affine = check_geometry(affine, label, img.header)
    return shape, affine  # type: ignore[return-value]


class ScannerNiftiReader(NibabelReader):
    """MONAI's ``NibabelReader`` that keeps the file's scanner geometry: ``LoadImaged(reader=ScannerNiftiReader)``.

    ``NibabelReader.read`` "rectifies" a header whose ``pixdim`` field disagrees with the affine by rebuilding the
    affine from the pixdims, which moves a valid sform (qform code 0) by tens of millimetres. This reader takes the
    affine by the NIfTI rules (nibabel's ``img.affine``: sform, else qform, else pixdims) unchanged, and refuses a
    missing or unreadable file and a zero-size or singular affine in one sentence naming the file
    (:func:`check_geometry`) before any voxel is read.
    """

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> Any:
        names = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        self.filenames = names
        images = []
        for name in names:
            img, _ = _open_nifti(name, data=False)
            check_geometry(np.asarray(img.affine, dtype=np.float64), str(name))
            images.append(img)
        return images if len(names) > 1 else images[0]


# ------------------------------------------------------------------------------------------------------ content checks


def _check_values(arr: np.ndarray, name: str, purpose: str = "super-resolve") -> None:
    """Finite and not constant (the NaN/Inf and constant sentences, written once)."""
    check_finite(arr, name)
    if float(arr.max()) == float(arr.min()):
        raise InputError(f"{name}: the image is constant (every voxel is {float(arr.min()):g}), nothing to {purpose}.")


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
    _check_values(arr, name)
    return arr


def has_scanner_geometry(path: str | os.PathLike) -> bool:
    """Whether an image file places its voxels in scanner space: a DICOM series, or a NIfTI header whose qform or
    sform code is set (both 0 means "unknown" geometry: nibabel then builds the affine from the voxel sizes alone)."""
    if is_dicom_dir(path):
        return True
    img, _ = _open_nifti(path, data=False)
    header = img.header
    if "sform_code" not in header or "qform_code" not in header:
        return True
    return int(header["sform_code"]) != 0 or int(header["qform_code"]) != 0


def check_geometry(affine: np.ndarray, name: str, header: Any = None) -> np.ndarray:
    """The scanner affine of an image, with one-sentence errors for missing or degenerate geometry.

    ``header``: the NIfTI header, whose qform and sform codes must not both be 0 (no scanner geometry).
    """
    if header is not None and "sform_code" in header and "qform_code" in header:
        if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
            raise InputError(
                f"{name}: no scanner geometry (the NIfTI qform and sform codes are both 0), so it cannot be placed in "
                f"world space next to the other contrast; write the image with its affine."
            )
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise InputError(f"{name}: the affine is missing or not finite.")
    spacing = spacing_from_affine(a)
    if not (spacing > 1e-6).all() or abs(np.linalg.det(a[:3, :3])) < 1e-9 * float(np.prod(np.maximum(spacing, 1e-6))):
        raise InputError(
            f"{name}: zero voxel size or a degenerate affine (voxel size {np.round(spacing, 6).tolist()} mm)."
        )
    return a


# ------------------------------------------------------------------------------------------------------ loaders


def read_torch_file(path: str | os.PathLike, what: str = "PyTorch checkpoint", missing_hint: str = "",
                    unreadable_hint: str = "") -> Any:
    """The object in a PyTorch file, read with ``torch.load(weights_only=True)`` (no code runs), with one sentence
    naming the file when it is missing (``"<path>: <what> not found<missing_hint>."``) or unreadable."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: {what} not found{missing_hint}.")
    try:
        return torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"{p}: not a readable {what} ({type(e).__name__}{unreadable_hint}).") from e


def load_volume(
    path: str | os.PathLike,
    ndim: int = 3,
    name: str | None = None,
    require_geometry: bool = False,
    channels: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Load a NIfTI volume (or a DICOM series directory) as ``(float32 array, 4x4 affine)``, validated on this read.

    Args:
        ndim: spatial dimensions after squeezing singleton axes (:func:`check_volume`).
        name: argument name used in the sentences (``"<name> (<path>)"``; default: the path); an empty path is then
            ``"<name>: no file given; pass --<name> <file.nii.gz>."``.
        require_geometry: check the scanner geometry (:func:`check_geometry`): inputs placed in world space next to
            other inputs.
        channels: the number of channels (4th axis) the caller expects, checked from the header before the voxel data.

    Raises:
        InputError: missing/unreadable file, a channel count other than ``channels``, content that fails
            :func:`check_volume`, or (``require_geometry``) missing or degenerate geometry.
    """
    if name is not None and not str(path).strip():
        raise InputError(f"{name}: no file given; pass --{name} <file.nii.gz>.")
    label = str(path) if name is None else f"{name} ({path})"
    if is_dicom_dir(path):
        data, affine = read_image(path, label)
        header = None
    else:
        img, _ = _open_nifti(path, label, data=False)
        _check_channels(img, label, channels)
        data = _voxels(img, label)
        affine, header = np.asarray(img.affine, dtype=np.float64), img.header
    arr = check_volume(data, name=label, ndim=ndim)
    if require_geometry:
        affine = check_geometry(affine, label, header)
    return arr, affine


def _complex_layout(shape: tuple[int, ...], dtype: np.dtype) -> str | None:
    if np.issubdtype(dtype, np.complexfloating):
        return f"complex dtype {dtype}"
    if len(shape) in (4, 5) and int(shape[-1]) == 2:
        return "2 channels (real, imaginary)"
    return None


def _magnitude_shape(
    p: Path, shape: tuple[int, ...], dtype: np.dtype, complex_mode: str, what: str
) -> tuple[tuple[int, ...], str | None]:
    """Spatial shape of the magnitude image of data with ``shape`` and ``dtype`` (and its complex layout), checked."""
    cx = _complex_layout(shape, dtype)
    if cx is not None and complex_mode != "magnitude":
        raise InputError(
            f"{p}: the {what} image is complex ({cx}) but ArRFR expects a magnitude image (the paper keeps only the "
            f"sodium magnitude); pass its magnitude or set --complex_sodium magnitude to convert it."
        )
    out = tuple(shape[:-1]) if cx is not None and not np.issubdtype(dtype, np.complexfloating) else tuple(shape)
    while len(out) > 3 and out[-1] == 1:
        out = out[:-1]
    if len(out) not in (2, 3):
        raise InputError(f"{p}: expected a 2D slice or a 3D volume, got shape {out}.")
    if sum(n > 1 for n in out) < 2:
        raise InputError(f"{p}: an image needs at least two axes with 2 or more pixels, got shape {out}.")
    return out, cx


def magnitude_geometry(
    path: str | os.PathLike, complex_mode: str = "error", what: str = "sodium"
) -> tuple[tuple[int, ...], np.ndarray]:
    """``(spatial shape, affine)`` of the magnitude image :func:`load_magnitude` returns, from the header alone (the
    checks that need no voxel data: complex layout, dimensionality)."""
    p = Path(path)
    shape, dtype, affine = read_image_header(p)
    out, _ = _magnitude_shape(p, shape, dtype, complex_mode, what)
    return out, affine


def load_magnitude(path: str | os.PathLike, complex_mode: str = "error", what: str = "sodium") -> tuple[np.ndarray, np.ndarray]:
    """A 2D slice or 3D volume as a float32 magnitude image and its affine (ArRFR inputs), validated on this read.

    Complex data (complex dtype, or a last axis of 2 = real/imaginary) is an :class:`InputError` unless
    ``complex_mode="magnitude"``, which converts it to its magnitude.
    """
    p = Path(path)
    data, affine = read_image(p)
    out, cx = _magnitude_shape(p, tuple(data.shape), data.dtype, complex_mode, what)
    if np.iscomplexobj(data):
        data = np.abs(data)
    elif cx is not None:
        data = np.sqrt(np.sum(data.astype(np.float64) ** 2, axis=-1))
    data = np.asarray(data, dtype=np.float32).reshape(out)
    _check_values(data, str(p), purpose="fuse")
    return data, affine


def read_image_geometry(
    path: str | os.PathLike, header_only: bool = False
) -> tuple[tuple[int, int, int], int, np.ndarray]:
    """``(spatial shape as 3D, channels, 4x4 affine)`` of a 2D or 3D image (channels in a 4th/5th axis), after checking
    it is readable, real-valued and, unless ``header_only`` (then the content is checked where the voxels are read,
    :class:`monai_inr.transforms.CheckVolumed`), finite and not constant (one-sentence :class:`InputError` otherwise)."""
    p = Path(path)
    if header_only:
        shape, dtype, affine = read_image_header(p)
        data = None
    else:
        data, affine = read_image(p)
        shape, dtype = tuple(data.shape), data.dtype
    if len(shape) == 2:
        spatial, channels = (shape[0], shape[1], 1), 1
    elif len(shape) == 3:
        spatial, channels = shape, 1
    elif len(shape) == 4:
        spatial, channels = shape[:3], shape[3]
    elif len(shape) == 5 and shape[3] == 1:
        spatial, channels = shape[:3], shape[4]
    else:
        raise InputError(f"{p}: expected a 2D slice or a 3D volume (optionally with channels), got shape {shape}.")
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise InputError(f"{p}: expected real-valued intensities (complex data as 2 channels), got dtype {dtype}.")
    if sum(int(n) > 1 for n in spatial) < 2:
        raise InputError(f"{p}: an image needs at least two in-plane axes with 2 or more pixels, got shape {shape}.")
    if data is not None:
        _check_values(data, str(p))
    return tuple(int(n) for n in spatial), int(channels), affine  # type: ignore


def check_finite(array: Any, name: str) -> None:
    """Raise the one-sentence :class:`InputError` when ``array`` (numpy or torch) holds a NaN or Inf."""
    arr = array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
    finite = np.isfinite(arr)
    if not finite.all():
        raise InputError(f"{name}: contains {int((~finite).sum())} NaN or Inf voxels.")


def check_min_shape(shape: Sequence[int], min_shape: Sequence[int], name: str, need: str = "training needs") -> None:
    """Raise the one-sentence :class:`InputError` when a spatial ``shape`` is smaller than ``min_shape`` on an axis
    (``need`` says what the size is for: a training image smaller than the HR crop of the largest scale)."""
    shape, min_shape = tuple(int(n) for n in shape), tuple(int(n) for n in min_shape)
    if any(n < m for n, m in zip(shape, min_shape)):
        raise InputError(
            f"{name}: the image ({'x'.join(map(str, shape))}) is smaller than the {'x'.join(map(str, min_shape))} "
            f"voxels {need} (the HR crop at the largest scale); use a smaller lr_patch_size or scale range, or "
            f"larger images."
        )


def check_values(array: Any, name: str, purpose: str = "super-resolve") -> None:
    """Real, finite and not constant (the sentences of :func:`check_volume`), for data already in memory."""
    arr = np.asarray(array.detach().cpu() if hasattr(array, "detach") else array)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"{name}: expected real-valued intensities, got dtype {arr.dtype}.")
    _check_values(arr, name, purpose)


def load_mask(path: str | os.PathLike, shape: Sequence[int], affine: np.ndarray, name: str) -> np.ndarray:
    """A boolean mask (voxels > 0) that must lie on the grid ``(shape, affine)`` of its image.

    Raises:
        InputError: missing/unreadable file, another shape or affine, or an empty mask.
    """
    label = f"{name} ({path})"
    img, data = _open_nifti(path, label)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if tuple(data.shape) != tuple(shape):
        raise InputError(f"{label}: shape {tuple(data.shape)} does not match its contrast's {tuple(shape)}.")
    if not np.allclose(np.asarray(img.affine), affine, atol=1e-3):
        raise InputError(f"{label}: its affine differs from its contrast's affine.")
    m = np.nan_to_num(np.asarray(data, dtype=np.float32)) > 0
    if not m.any():
        raise InputError(f"{label}: the mask is empty.")
    return m


def foreground_mask(image: np.ndarray, threshold: float = 0.05, name: str = "image") -> np.ndarray:
    """Foreground of a [0, 1]-normalised image: voxels above ``threshold`` with holes filled (3D).

    Raises:
        InputError: nothing above the threshold.
    """
    m = ndimage.binary_fill_holes(np.asarray(image) > float(threshold))
    if not m.any():
        raise InputError(f"{name}: empty foreground (no voxel above {threshold:g} of the intensity range).")
    return m


def output_names(paths: Sequence[str | os.PathLike], defaults: Sequence[str] = ("contrast1", "contrast2")) -> list[str]:
    """File stems of the inputs (``sub-01_T1w.nii.gz`` -> ``sub-01_T1w``); ``defaults`` for empty paths, made
    unique when two stems coincide."""
    names = []
    for p, d in zip(paths, defaults):
        name = Path(str(p)).name if p and str(p).strip() else d
        for suffix in (".nii.gz", ".nii"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        names.append(name or d)
    if len(set(names)) < len(names):
        names = [f"{n}_{d}" for n, d in zip(names, defaults)]
    return names


# ------------------------------------------------------------------------------------------------------ writing


_PARTIAL = ".partial"


def atomic_path(path: str | os.PathLike) -> tuple[Path, Path]:
    """A temporary sibling name for ``path`` and the final path.

    ``.<name>.<pid>.<random>.partial<suffixes>``: unique per process and call, the same suffixes (so writers pick the
    right format), and the writer's process id, so :func:`remove_stale_partials` can clean up after a killed writer.
    """
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=f"{_PARTIAL}{suffix}", dir=path.parent)
    os.close(fd)
    return Path(tmp), path


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (the writer of a temporary file or folder)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's live process
        return True
    return True


def remove_stale_partials(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (:func:`atomic_path` names) that killed writers left in ``folder``."""
    removed: list[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.glob(f".*{_PARTIAL}*"):
        parts = p.name.split(_PARTIAL)[0].rsplit(".", 2)
        pid = parts[1] if len(parts) == 3 else ""
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def nifti_image(
    array: Any, affine: np.ndarray, dtype=np.float32, scanner: bool = True, description: str | None = None
) -> Any:
    """The NIfTI image every output is written as: sform and qform set to ``affine`` (see :func:`save_nifti`)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    img = nib.Nifti1Image(np.asarray(array, dtype=dtype), np.asarray(affine, dtype=np.float64))
    code = 1 if scanner else 0
    img.set_qform(img.affine, code=code)
    img.set_sform(img.affine, code=code)
    if description:
        img.header["descrip"] = description.encode("ascii", "replace")[:80]
    return img


def save_nifti_group(
    volumes: Sequence[tuple[Any, str | os.PathLike]], affine: np.ndarray, description: str | None = None,
    overwrite: bool = True,
) -> list[Path]:
    """Write ``(array, path)`` volumes on one grid as one result (:func:`write_atomic_group`: every file complete
    before the first is published; ``overwrite=False`` never replaces a file), NIfTI as :func:`save_nifti` writes it."""
    items = []
    for array, path in volumes:
        img = nifti_image(array, affine, description=description)
        items.append((path, lambda tmp, img=img: nib.save(img, str(tmp))))
    return write_atomic_group(items, overwrite)


def save_nifti(
    array: Any,
    affine: np.ndarray,
    path: str | os.PathLike,
    dtype=np.float32,
    scanner: bool = True,
    description: str | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a NIfTI file atomically (:func:`write_atomic`: temporary name, fsync, rename; mode honours the umask),
    with sform and qform set to ``affine``.

    ``scanner``: the affine is in scanner space (codes 1); ``False`` keeps an input's "unknown" geometry (codes 0,
    the voxel sizes still in ``pixdim``) rather than claiming scanner space for it. ``description``: the header's
    ``descrip`` field (at most 80 characters; how the image was made, e.g. the scale). ``overwrite=False`` never
    replaces an existing file, also one a concurrent run wrote after this run's pre-flight check.
    """
    img = nifti_image(array, affine, dtype, scanner, description)
    return write_atomic(path, lambda tmp: nib.save(img, str(tmp)), overwrite)


def _honour_umask(path: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # mkstemp creates 0600


def check_output_folder(folder: str | os.PathLike) -> Path:
    """Refuse, before any work, an output folder that is a file, lies under a file, or cannot be created or written
    by this user (one sentence naming it); returns the folder (not created)."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise InputError(f"{folder}: cannot be an output folder because {probe} is a file.")
    if not os.access(probe, os.W_OK | os.X_OK):
        if probe == folder:
            raise InputError(f"{folder}: the output folder is not writable by this user.")
        raise InputError(f"{folder}: the output folder cannot be created because {probe} is not writable by this user.")
    return folder


def _fsync_dir(folder: Path) -> None:
    try:  # make the renames themselves durable
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - some file systems cannot fsync a directory
        pass


def _publish(tmp: Path, final: Path, overwrite: bool) -> None:
    """Move a complete temporary file to its final name: replace (``overwrite``) or create it only if it does not
    exist (a hard link fails atomically when the name is taken, so a concurrent run's result is never replaced)."""
    if overwrite:
        os.replace(tmp, final)
        return
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise InputError(
            f"{final}: was written by another run while this one computed; it is kept (pass --overwrite to "
            f"replace it, or choose another output folder)."
        ) from None
    except OSError:  # pragma: no cover - a file system without hard links: check, then rename
        if final.exists():
            raise InputError(f"{final}: already exists; pass --overwrite to replace it.") from None
        os.replace(tmp, final)
        return
    tmp.unlink()


def write_atomic_group(
    items: Sequence[tuple[str | os.PathLike, Callable[[Path], None]]], overwrite: bool = True
) -> list[Path]:
    """Write several files as one result: every ``write(temporary path)`` completes (fsync, umask mode) before the
    first is published under its final name, and any failure removes the temporaries and leaves earlier files as
    they were.

    The temporary names come from :func:`atomic_path` (unique per process and call, the same suffixes, the same
    folder), and temporaries that killed writers left in the folders are removed first
    (:func:`remove_stale_partials`). ``overwrite=False`` publishes without replacing: an output that another run
    wrote meanwhile is kept and this run stops with one sentence (no result is ever silently lost).
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in items:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_partials(path.parent)
            tmp, final = atomic_path(path)
            staged.append((tmp, final))
            write(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            _honour_umask(tmp)
        if not overwrite:  # a group is published whole or not at all: refuse before the first name is taken
            for _, final in staged:
                if final.exists():
                    raise InputError(
                        f"{final}: was written by another run while this one computed; it is kept (pass --overwrite "
                        f"to replace it, or choose another output folder)."
                    )
        for tmp, final in staged:
            _publish(tmp, final, overwrite)
    finally:
        for tmp, _ in staged:
            if tmp.exists():
                tmp.unlink()
    for folder in sorted({final.parent for _, final in staged}):
        _fsync_dir(folder)
    return [final for _, final in staged]


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None], overwrite: bool = True) -> Path:
    """Call ``write(temporary path)`` and rename the result over ``path`` once complete.

    The temporary name comes from :func:`atomic_path` (unique per process and call, same suffixes, same folder), the
    file is fsync-ed before it is published, its mode honours the umask, and on any failure it is removed: readers
    see the old file or the new one, never a half-written one, and concurrent writers never share a temporary name.
    Temporaries that killed writers left in the folder are removed first (:func:`remove_stale_partials`).
    ``overwrite=False`` never replaces an existing file (:func:`write_atomic_group`).
    """
    return write_atomic_group([(path, write)], overwrite)[0]


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`write_atomic` (checkpoints: the old file stays until the complete new one
    replaces it; a killed writer leaves only a temporary file that :func:`remove_stale_partials` removes)."""
    return write_atomic(path, lambda tmp: torch.save(obj, str(tmp)))


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
