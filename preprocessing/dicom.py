"""DICOM series I/O with ITK (GDCM), converted to the project's (i, j, k) arrays and RAS affines.

``ants.dicom_read`` is deliberately not used: it takes the geometry from whichever file ``os.listdir`` returns first
and ignores ImagePositionPatient. ITK's GDCM series reader sorts slices by position and returns the LPS geometry,
which is converted to RAS here (``affine_ras = diag(-1, -1, 1, 1) @ affine_lps``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from monai_inr.io import InputError

__all__ = ["read_dicom_series", "write_dicom_series", "itk_to_array_affine", "is_dicom_dir"]

log = logging.getLogger(__name__)
_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def _itk():
    import itk

    return itk


def is_dicom_dir(path: str | os.PathLike) -> bool:
    """True for a directory (DICOM series input); files are read as NIfTI."""
    return Path(path).is_dir()


def itk_to_array_affine(image) -> tuple[np.ndarray, np.ndarray]:
    """An ITK image -> ((i, j, k) float32 array, 4x4 RAS affine)."""
    itk = _itk()
    arr = itk.array_from_image(image).transpose(2, 1, 0).astype(np.float32)
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)
    direction = np.asarray(itk.array_from_matrix(image.GetDirection()), dtype=np.float64)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing[None, :]
    lps[:3, 3] = origin
    return arr, _FLIP @ lps


def read_dicom_series(path: str | os.PathLike, series_uid: str | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Read one DICOM series from a directory with ITK's GDCM reader.

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


def write_dicom_series(
    array: np.ndarray,
    affine_ras: np.ndarray,
    out_dir: str | os.PathLike,
    description: str = "T2w",
    max_value: float = 4000.0,
) -> Path:
    """Write an (i, j, k) volume as a single-frame MR DICOM series (int16, one file per k slice) with full geometry.

    Intensities are scaled linearly to [0, ``max_value``] (relative values are kept). Used by the simulator and tests.
    """
    itk = _itk()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(array, dtype=np.float64)
    peak = float(arr.max()) if arr.size and arr.max() > 0 else 1.0
    data = np.clip(np.rint(arr / peak * max_value), -32768, 32767).astype(np.int16)
    lps = _FLIP @ np.asarray(affine_ras, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing[None, :]
    uid_root = "1.2.826.0.1.3680043.2.1125." + str(abs(hash((data.shape, float(peak)))) % 10**12)
    study_uid, series_uid = uid_root + ".1", uid_root + ".2"
    for k in range(data.shape[2]):
        sl = np.ascontiguousarray(data[:, :, k].T[None])  # ITK array order (z, y, x) with one slice
        img = itk.image_from_array(sl)
        pos = lps[:3, :3] @ np.array([0.0, 0.0, float(k)]) + lps[:3, 3]
        img.SetOrigin(pos.tolist())
        img.SetSpacing(spacing.tolist())
        img.SetDirection(itk.matrix_from_array(direction.copy()))
        md = img.GetMetaDataDictionary()
        tags = {
            "0008|0060": "MR",
            "0008|103e": description,
            "0020|000d": study_uid,
            "0020|000e": series_uid,
            "0020|0011": "1",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in pos),
            "0020|0037": "\\".join(f"{v:.6f}" for v in np.concatenate([direction[:, 0], direction[:, 1]])),
            "0028|0030": f"{spacing[1]:.6f}\\{spacing[0]:.6f}",
            "0018|0050": f"{spacing[2]:.6f}",
            "0018|0088": f"{spacing[2]:.6f}",
        }
        for key, value in tags.items():
            md[key] = value
        writer = itk.ImageFileWriter[type(img)].New()
        writer.SetInput(img)
        writer.SetFileName(str(out_dir / f"IM{k + 1:04d}.dcm"))
        io = itk.GDCMImageIO.New()
        io.KeepOriginalUIDOn()
        writer.SetImageIO(io)
        writer.Update()
    return out_dir
