"""Loading and saving transforms: every read goes through :mod:`monai_inr.io` (validated on that read, one sentence on
bad input), every write is atomic with the affine the prediction carries.

* :class:`LoadVolumed`: one validated 2D/3D volume per key as a channel-first MetaTensor (replaces ``LoadImaged`` +
  ``EnsureChannelFirstd`` in the bundles' inference, so the input is read and checked once);
* :class:`CheckVolumed`: the content checks of :mod:`monai_inr.io` on images another loader read (``LoadImaged``);
* :class:`LoadMagnituded`: magnitude images, complex input refused or converted (ArRFR);
* :class:`LoadNexusPaird`: the two LR inputs of Nexus-INR (and optionally the HR references) with their output grid;
* :class:`SaveVolumed`, :class:`SaveContrastsd`, :class:`SaveNexusOutputsd`: atomic NIfTI outputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from monai_inr import coords
from monai_inr.coords import spacing_from_affine
from monai_inr.io import (
    check_finite,
    check_min_shape,
    check_values,
    has_scanner_geometry,
    load_magnitude,
    load_volume,
    save_nifti,
    save_nifti_group,
)
from monai_inr.transforms.nexus_sampling import MODALITIES

__all__ = [
    "LoadVolumed",
    "CheckVolumed",
    "LoadMagnituded",
    "LoadNexusPaird",
    "SaveVolumed",
    "SaveContrastsd",
    "SaveNexusOutputsd",
    "output_path_for",
    "grid_description",
]


def output_path_for(source: str | os.PathLike, output_dir: str | os.PathLike, postfix: str = "sr", ext: str = ".nii.gz") -> Path:
    """``<output_dir>/<input stem>_<postfix><ext>`` for an input file name."""
    name = Path(source).name
    for suffix in (".nii.gz", ".nii", ".mha", ".nrrd"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(output_dir) / f"{name}_{postfix}{ext}"


def grid_description(what: str, source_affine: Any, affine: np.ndarray) -> str:
    """The NIfTI ``descrip`` of an output: ``"monai-inr <what> x2.00x2.00x1.50 1.000x1.000x2.000mm"`` (per-axis scale
    from the source's voxel size, then the output's voxel size), so a file says how it was made."""
    out = spacing_from_affine(np.asarray(affine, dtype=np.float64))
    text = f"monai-inr {what}"
    if source_affine is not None:
        src = spacing_from_affine(np.asarray(source_affine, dtype=np.float64))
        text += " x" + "x".join(f"{a / b:.2f}" for a, b in zip(src, out))
    return f"{text} {'x'.join(f'{v:.3f}' for v in out)}mm"[:80]


class LoadVolumed(MapTransform):
    """Load each of ``keys`` (a NIfTI file or a DICOM series directory) with :func:`monai_inr.io.load_volume` as a
    channel-first float32 MetaTensor ``(1, *spatial)`` with its affine and ``filename_or_obj``.

    The content is validated on this read (dimensionality, real finite values, not constant; one sentence naming the
    file otherwise), so an inference needs no separate validation pass that reads every input a second time.

    Args:
        keys: keys of the file paths.
        ndim: spatial dimensions of the volumes (singleton axes squeezed).
    """

    def __init__(self, keys: KeysCollection, ndim: int = 3, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ndim = int(ndim)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            arr, affine = load_volume(path, ndim=self.ndim)
            d[key] = MetaTensor(
                torch.from_numpy(np.ascontiguousarray(arr)[None]),
                affine=torch.as_tensor(affine, dtype=torch.float64),
                meta={"filename_or_obj": path, "original_affine": affine, "spatial_shape": np.asarray(arr.shape),
                      "scanner_geometry": has_scanner_geometry(path)},
            )
        return d


class CheckVolumed(MapTransform):
    """Check each of ``keys`` (as read by ``LoadImaged``) is real, finite and not constant, with the one-sentence
    errors of :mod:`monai_inr.io` naming the file (``meta["filename_or_obj"]``): the content check of an inference
    happens on the dataset's one read of its inputs, not on a separate validation pass.

    ``allow_constant``: accept constant images (training slices at the edge of a volume are legitimately all
    background); NaN/Inf are refused either way. ``min_shape``: the smallest spatial shape the caller can use (a
    training set checked on its cached read, before the first iteration, e.g. the HR crop of the largest scale).
    """

    def __init__(
        self,
        keys: KeysCollection,
        allow_constant: bool = False,
        min_shape: Sequence[int] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.allow_constant = bool(allow_constant)
        self.min_shape = None if min_shape is None else tuple(int(n) for n in min_shape)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            name = str(getattr(img, "meta", {}).get("filename_or_obj", key))
            if self.allow_constant:
                check_finite(img, name)
            else:
                check_values(img, name)
            if self.min_shape is not None:
                check_min_shape(img.shape[1:], self.min_shape, name)
        return d


class LoadMagnituded(MapTransform):
    """Load NIfTI images as channel-first magnitude MetaTensors ``(1, *spatial)`` with their affine.

    A complex image (complex dtype, or a last axis of 2 = real/imaginary) is an :class:`~monai_inr.errors.InputError`
    with ``complex_mode="error"``; with ``"magnitude"`` its magnitude is used (the paper keeps only the sodium
    magnitude). MONAI's ``LoadImage`` would silently drop the imaginary part of a complex NIfTI, hence this loader
    (:func:`monai_inr.io.load_magnitude`).
    """

    def __init__(self, keys: KeysCollection, complex_mode: str = "error", what: str = "sodium",
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if complex_mode not in ("error", "magnitude"):
            raise ValueError(f"complex_mode must be 'error' or 'magnitude', got {complex_mode!r}.")
        self.complex_mode = complex_mode
        self.what = what

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            arr, affine = load_magnitude(path, self.complex_mode, self.what)
            d[key] = MetaTensor(torch.from_numpy(arr[None].copy()), affine=torch.as_tensor(affine),
                                meta={"filename_or_obj": path, "original_affine": affine})
        return d


class LoadNexusPaird(MapTransform):
    """Load the two LR inputs (and optionally the HR references) for whole-volume prediction.

    Output: ``t1w_lr``, ``t2w_lr`` MetaTensors ``(D, H, W)`` with their affines; ``output_shape`` and
    ``output_affine`` (the grid of ``reference_keys[0]`` when given, else :func:`~monai_inr.coords.union_output_grid` at
    ``target_spacing``); with ``reference_keys`` also ``reference`` ``(2, *shape)`` (the stacked HR T1w, T2w).
    """

    def __init__(
        self,
        lr_keys: Sequence[str] = ("t1w_lr", "t2w_lr"),
        reference_keys: Sequence[str] | None = None,
        target_spacing: float | Sequence[float] | None = None,
        in_channels: int = 1,
    ) -> None:
        super().__init__(list(lr_keys))
        self.lr_keys = list(lr_keys)
        self.reference_keys = list(reference_keys) if reference_keys else None
        self.target_spacing = target_spacing
        self.in_channels = int(in_channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        vols = [
            load_volume(d[k], name=m, require_geometry=True, channels=self.in_channels)
            for k, m in zip(self.lr_keys, MODALITIES)
        ]
        names = [f"{m} ({d[k]})" for k, m in zip(self.lr_keys, MODALITIES)]
        coords.check_overlap(vols[0][0].shape, vols[0][1], vols[1][0].shape, vols[1][1], names=names)
        for k, (arr, aff) in zip(self.lr_keys, vols):
            d[k] = MetaTensor(torch.from_numpy(arr), affine=torch.as_tensor(aff))
        if self.reference_keys:
            refs = [load_volume(d[k], name=k, require_geometry=True, channels=1) for k in self.reference_keys]
            stacked = torch.from_numpy(np.stack([r[0] for r in refs]))
            d["reference"] = MetaTensor(stacked, affine=torch.as_tensor(refs[0][1]))
            shape, affine = refs[0][0].shape, refs[0][1]
        else:
            shape, affine = coords.union_output_grid(
                vols[0][0].shape, vols[0][1], vols[1][0].shape, vols[1][1], self.target_spacing
            )
        d["output_shape"] = torch.tensor(shape, dtype=torch.long)
        d["output_affine"] = torch.as_tensor(np.asarray(affine, np.float64))
        return d


class SaveVolumed(MapTransform):
    """Save each of ``keys`` (a channel-first MetaTensor, one channel) as NIfTI with the affine in its meta.

    Unlike ``SaveImaged`` the file is written under a temporary name and renamed when complete, so a crash never
    leaves a half-written output, and the affine is exactly the prediction's (the super-resolved grid's), never the
    input's. The output name derives from the input file recorded in ``source_key``'s meta (``filename_or_obj``);
    the header's ``descrip`` records the scale and voxel size. ``overwrite=False`` (the bundles' default) never
    replaces a file, also one a concurrent run wrote after the pre-flight check (one sentence instead).
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        source_key: str = "image",
        output_postfix: str = "sr",
        output_ext: str = ".nii.gz",
        output_dtype: np.dtype | type = np.float32,
        overwrite: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.source_key = source_key
        self.output_postfix = output_postfix
        self.output_ext = output_ext
        self.output_dtype = output_dtype
        self.overwrite = bool(overwrite)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        meta = d[self.source_key].meta
        source = meta.get("filename_or_obj", "image")
        for key in self.key_iterator(d):
            img = d[key]
            if img.shape[0] != 1:
                raise ValueError(f"{key}: expected one channel to save, got {img.shape[0]}.")
            path = output_path_for(source, self.output_dir, self.output_postfix, self.output_ext)
            affine = np.asarray(img.affine, dtype=np.float64)
            save_nifti(img[0], affine, path, dtype=self.output_dtype,
                       scanner=bool(meta.get("scanner_geometry", True)),
                       description=grid_description(self.output_postfix, meta.get("original_affine"), affine),
                       overwrite=self.overwrite)
            img.meta["saved_to"] = str(path)
        return d


class SaveContrastsd(MapTransform):
    """Write each channel of ``keys`` (``(C, *spatial)`` MetaTensor) as its own NIfTI with the tensor's affine.

    Channel ``c`` goes to ``<output_dir>/<names[c]>_<postfix><ext>``, clipped to [0, 1] (``clip``) and mapped back to
    the contrast's intensity range stored in ``meta["intensity_range"]`` (``restore_intensity``). The contrasts are
    written as one result (:func:`monai_inr.io.write_atomic_group`: all complete before either is published;
    ``overwrite=False`` never replaces a file).
    """

    def __init__(
        self,
        keys: KeysCollection,
        output_dir: str | os.PathLike,
        names: Sequence[str] = ("contrast1", "contrast2"),
        output_postfix: str = "sr",
        output_ext: str = ".nii.gz",
        clip: bool = True,
        restore_intensity: bool = True,
        overwrite: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_dir = Path(output_dir)
        self.names = list(names)
        self.output_postfix = output_postfix
        self.output_ext = output_ext
        self.clip = bool(clip)
        self.restore_intensity = bool(restore_intensity)
        self.overwrite = bool(overwrite)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            if img.ndim == 5 and img.shape[0] == 1:
                img = img[0]
            if img.shape[0] > len(self.names):
                raise ValueError(f"{key}: {img.shape[0]} channels but only {len(self.names)} output names.")
            affine = np.asarray(img.affine.detach().cpu() if isinstance(img.affine, torch.Tensor) else img.affine)
            rng = np.asarray(img.meta.get("intensity_range", [[0.0, 1.0]] * img.shape[0]), dtype=np.float64)
            volumes = []
            for c in range(img.shape[0]):
                v = img[c].detach().float().cpu().numpy()
                if self.clip:
                    v = np.clip(v, 0.0, 1.0)
                if self.restore_intensity:
                    v = v * (rng[c, 1] - rng[c, 0]) + rng[c, 0]
                volumes.append((v, self.output_dir / f"{self.names[c]}_{self.output_postfix}{self.output_ext}"))
            saved = save_nifti_group(volumes, affine, grid_description(self.output_postfix, None, affine),
                                     self.overwrite)
            img.meta["saved_to"] = [str(p) for p in saved]
        return d


class SaveNexusOutputsd(MapTransform):
    """Write ``pred`` ``(2, *shape)`` as ``<output_dir>/<name>_<postfix>.nii.gz`` per modality with the pred affine.

    Both files are written as one result (:func:`monai_inr.io.write_atomic_group`: complete, fsync-ed, umask mode,
    before either is published; ``overwrite=False`` never replaces a file).
    """

    def __init__(self, keys="pred", output_dir: str = "./eval/inference", names: Sequence[str] = MODALITIES,
                 output_postfix: str = "sr", output_ext: str = ".nii.gz", overwrite: bool = True) -> None:
        super().__init__(keys)
        self.output_dir, self.names, self.postfix, self.ext = Path(output_dir), list(names), output_postfix, output_ext
        self.overwrite = bool(overwrite)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            affine = np.asarray(pred.affine, np.float64).reshape(-1, 4, 4)[-1]
            arr = pred.detach().cpu().numpy().reshape(-1, *pred.shape[-3:])
            volumes = [(arr[c], self.output_dir / f"{name}_{self.postfix}{self.ext}") for c, name in enumerate(self.names)]
            save_nifti_group(volumes, affine, grid_description(self.postfix, None, affine), self.overwrite)
        return d
