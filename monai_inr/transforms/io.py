"""Writing super-resolved volumes: atomic NIfTI output with the affine the prediction carries."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_inr.io import save_nifti

__all__ = ["SaveVolumed", "output_path_for"]


def output_path_for(source: str | os.PathLike, output_dir: str | os.PathLike, postfix: str = "sr", ext: str = ".nii.gz") -> Path:
    """``<output_dir>/<input stem>_<postfix><ext>`` for an input file name."""
    name = Path(source).name
    for suffix in (".nii.gz", ".nii", ".mha", ".nrrd"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(output_dir) / f"{name}_{postfix}{ext}"


class SaveVolumed(MapTransform):
    """Save each of ``keys`` (a channel-first MetaTensor, one channel) as NIfTI with the affine in its meta.

    Unlike ``SaveImaged`` the file is written under a temporary name and renamed when complete, so a crash never
    leaves a half-written output, and the affine is exactly the prediction's (the super-resolved grid's), never the
    input's. The output name derives from the input file recorded in ``source_key``'s meta (``filename_or_obj``).
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        source_key: str = "image",
        output_postfix: str = "sr",
        output_ext: str = ".nii.gz",
        output_dtype: np.dtype | type = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.source_key = source_key
        self.output_postfix = output_postfix
        self.output_ext = output_ext
        self.output_dtype = output_dtype

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        source = d[self.source_key].meta.get("filename_or_obj", "image")
        for key in self.key_iterator(d):
            img = d[key]
            if img.shape[0] != 1:
                raise ValueError(f"{key}: expected one channel to save, got {img.shape[0]}.")
            path = output_path_for(source, self.output_dir, self.output_postfix, self.output_ext)
            save_nifti(img[0], np.asarray(img.affine), path, dtype=self.output_dtype)
            img.meta["saved_to"] = str(path)
        return d
