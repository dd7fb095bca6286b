"""DICOM series I/O with ITK (GDCM), converted to the project's (i, j, k) arrays and RAS affines.

Reading is :func:`monai_inr.io.read_dicom_series` (every read of the project lives in :mod:`monai_inr.io`; it is
re-exported here for the preprocessing CLI); this module adds the writer used by the simulator and the tests
(``affine_lps = diag(-1, -1, 1, 1) @ affine_ras``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from monai_inr.io import is_dicom_dir, itk_to_array_affine, read_dicom_series

__all__ = ["read_dicom_series", "write_dicom_series", "itk_to_array_affine", "is_dicom_dir"]

_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def _itk():
    import itk  # heavy optional dependency: only DICOM output needs it

    return itk


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
