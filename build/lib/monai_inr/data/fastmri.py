"""fastMRI datalists and slice loading: a target acquisition paired with a reference contrast of the same patient.

fastMRI (Zbontar et al., arXiv:1811.08839) stores one acquisition per HDF5 file: ``kspace`` (single-coil
``(slices, H, W)`` or multi-coil ``(slices, coils, H, W)``, complex64), ``reconstruction_esc`` / ``reconstruction_rss``
(``(slices, 320, 320)`` magnitude), the ISMRMRD XML header ``ismrmrd_header`` and attributes ``acquisition`` (knee:
``CORPD_FBK`` proton density, ``CORPDFS_FBK`` fat-suppressed PD), ``patient_id``, ``max``, ``norm``. Dual-ArbNet
(Zhang et al., MICCAI 2023, section 3) super-resolves FS-PD (target) with PD (reference) of the same patient.

* :func:`build_fastmri_datalist`: pairs files by ``patient_id`` (or a custom key) into ``{"image", "reference",
  "subject", "num_slices"}`` items, split reproducibly;
* :func:`load_fastmri_slice` / :class:`LoadFastMRISliced`: one slice as a channel-first image (magnitude 1 channel, or
  complex as real/imaginary 2 channels from single-coil k-space) with a 4x4 affine from the header's FOV.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from monai_inr.data.datalist import split_ids, write_datalist
from monai_inr.errors import InputError

__all__ = [
    "read_fastmri_info",
    "build_fastmri_datalist",
    "fastmri_slice_items",
    "load_fastmri_slice",
    "LoadFastMRISliced",
]


def _h5():
    import h5py  # a declared dependency; imported lazily to keep `import monai_inr.data` light

    return h5py


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _header_geometry(xml: Any) -> dict[str, Any]:
    """Recon matrix and FOV (mm) from an ISMRMRD header; empty dict if absent or unparsable."""
    if xml is None:
        return {}
    try:
        value = np.asarray(xml).item() if isinstance(xml, np.ndarray) and xml.ndim == 0 else xml
        text = value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)
        root = ET.fromstring(text)
    except Exception:
        return {}

    def find(path: str) -> list[float] | None:
        node = None
        for el in root.iter():
            if el.tag.split("}")[-1] == path.split("/")[0]:
                node = el
                break
        if node is None:
            return None
        for part in path.split("/")[1:]:
            nxt = [c for c in node if c.tag.split("}")[-1] == part]
            if not nxt:
                return None
            node = nxt[0]
        vals = []
        for axis in ("x", "y", "z"):
            c = [e for e in node if e.tag.split("}")[-1] == axis]
            vals.append(float(c[0].text) if c and c[0].text else float("nan"))
        return vals

    out: dict[str, Any] = {}
    for name in ("reconSpace", "encodedSpace"):
        m, f = find(f"{name}/matrixSize"), find(f"{name}/fieldOfView_mm")
        if m and f:
            out[name] = {"matrix": m, "fov_mm": f}
    return out


def read_fastmri_info(path: str | os.PathLike) -> dict[str, Any]:
    """Attributes and shapes of a fastMRI file: ``acquisition``, ``patient_id``, ``num_slices``, ``kspace_shape``,
    ``reconstructions`` (dataset names), ``geometry`` (recon matrix/FOV) and the other attributes."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: file not found.")
    h5py = _h5()
    try:
        with h5py.File(str(p), "r") as f:
            attrs = {k: _attr(v) for k, v in f.attrs.items()}
            if "kspace" not in f:
                raise InputError(f"{p}: not a fastMRI file (no 'kspace' dataset).")
            info = {
                "path": str(p.resolve()),
                "kspace_shape": tuple(int(v) for v in f["kspace"].shape),
                "num_slices": int(f["kspace"].shape[0]),
                "reconstructions": sorted(k for k in f.keys() if k.startswith("reconstruction")),
                "geometry": _header_geometry(f["ismrmrd_header"][()] if "ismrmrd_header" in f else None),
            }
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{p}: not a readable HDF5 file ({type(e).__name__}).") from e
    info.update(attrs)
    info.setdefault("acquisition", None)
    info.setdefault("patient_id", None)
    return info


def build_fastmri_datalist(
    folder: str | os.PathLike,
    target: str = "CORPDFS_FBK",
    reference: str = "CORPD_FBK",
    pair_key: str = "patient_id",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    output_file: str | os.PathLike | None = None,
    require_same_slices: bool = True,
) -> dict[str, Any]:
    """Pair fastMRI files of one patient: the ``target`` acquisition with the ``reference`` acquisition.

    Items: ``{"image": target file, "reference": reference file, "subject": <pair key value>, "num_slices": n}``.
    With several files of one acquisition for a patient the first by name is used (the others are listed under
    ``metadata.extra``). ``require_same_slices`` skips pairs whose slice counts differ (slices are paired by index).

    Raises:
        InputError: missing folder, no ``.h5`` files, files without the pairing attribute, or no complete pair.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: fastMRI folder not found.")
    if target == reference:
        raise InputError(f"target and reference must be different acquisitions, got {target!r} twice.")
    files = sorted(root.rglob("*.h5"))
    if not files:
        raise InputError(f"{root}: no fastMRI .h5 files.")
    groups: dict[str, dict[str, list[dict]]] = {}
    for f in files:
        info = read_fastmri_info(f)
        acq = info.get("acquisition")
        if acq not in (target, reference):
            continue
        pid = info.get(pair_key)
        if pid is None:
            raise InputError(f"{f}: has no {pair_key!r} attribute to pair acquisitions by.")
        groups.setdefault(str(pid), {}).setdefault("image" if acq == target else "reference", []).append(info)
    pairs: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    extra: list[str] = []
    for pid, g in sorted(groups.items()):
        if "image" not in g or "reference" not in g:
            continue
        t, r = g["image"][0], g["reference"][0]
        extra += [i["path"] for i in g["image"][1:] + g["reference"][1:]]
        if require_same_slices and t["num_slices"] != r["num_slices"]:
            skipped[pid] = f"{t['num_slices']} {target} slices but {r['num_slices']} {reference} slices"
            continue
        pairs[pid] = {"image": t["path"], "reference": r["path"], "subject": pid,
                      "num_slices": int(min(t["num_slices"], r["num_slices"]))}
    if not pairs:
        raise InputError(f"{root}: no patient has both a {target} and a {reference} file (paired by {pair_key!r}).")
    splits = split_ids(list(pairs), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    datalist: dict[str, Any] = {split: [dict(pairs[s]) for s in ids] for split, ids in splits.items()}
    datalist["metadata"] = {"name": "fastMRI", "target": target, "reference": reference, "pair_key": pair_key,
                            "skipped": skipped, "extra": extra}
    if output_file is not None:
        write_datalist(datalist, output_file)
    return datalist


def fastmri_slice_items(
    items: Sequence[Mapping[str, Any]], slices: str | Sequence[int] = "all", count: int = 8, margin: float = 0.2
) -> list[dict]:
    """One item per slice (``slice_index``): ``"all"`` slices, ``"central"`` (``count`` evenly spaced slices after
    dropping ``margin`` of the stack at each end, where knee volumes have little anatomy), or explicit indices."""
    out = []
    for item in items:
        n = int(item["num_slices"])
        if isinstance(slices, str):
            if slices == "all":
                idx = list(range(n))
            elif slices == "central":
                lo = min(int(round(margin * n)), (n - 1) // 2)
                hi = n - 1 - lo
                idx = sorted(set(np.linspace(lo, hi, num=min(count, hi - lo + 1)).round().astype(int).tolist()))
            else:
                raise ValueError(f"slices must be 'all', 'central' or a list of indices, got {slices!r}.")
        else:
            idx = [int(i) for i in slices if 0 <= int(i) < n]
        out += [dict(item, slice_index=int(i)) for i in idx]
    return out


def _centre_crop(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
    h, w = x.shape[-2:]
    ch, cw = min(int(size[0]), h), min(int(size[1]), w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return x[..., y0 : y0 + ch, x0 : x0 + cw]


def load_fastmri_slice(
    path: str | os.PathLike,
    index: int,
    source: str = "kspace",
    output: str = "complex",
    crop: Sequence[int] | None = (320, 320),
) -> tuple[np.ndarray, np.ndarray]:
    """One slice as ``(array (C, H, W) float32, 4x4 affine)``.

    Args:
        source: ``"kspace"`` (centred unitary inverse FFT of the k-space slice, fastMRI's convention; multi-coil data
            are combined by root-sum-of-squares, magnitude only) or ``"reconstruction"`` (``reconstruction_rss``, else
            ``reconstruction_esc``; magnitude).
        output: ``"complex"`` (real, imaginary: 2 channels; single-coil k-space only) or ``"magnitude"`` (1 channel).
        crop: centre crop of the image (fastMRI recon size 320 x 320; ``None`` keeps the full k-space FOV).

    The affine has the header's recon pixel size (FOV / matrix, else 1 mm) in-plane, the slice thickness through-plane,
    the slice at ``z = index * thickness`` and the in-plane FOV centred on the origin.
    """
    if source not in ("kspace", "reconstruction"):
        raise ValueError(f"source must be 'kspace' or 'reconstruction', got {source!r}.")
    if output not in ("complex", "magnitude"):
        raise ValueError(f"output must be 'complex' or 'magnitude', got {output!r}.")
    info = read_fastmri_info(path)
    n = info["num_slices"]
    if not 0 <= int(index) < n:
        raise InputError(f"{path}: slice {index} is outside its {n} slices.")
    h5py = _h5()
    with h5py.File(str(path), "r") as f:
        if source == "reconstruction":
            if output == "complex":
                raise InputError(f"{path}: reconstructions are magnitude images; use source='kspace' for complex data.")
            names = [k for k in ("reconstruction_rss", "reconstruction_esc") if k in f]
            if not names:
                raise InputError(f"{path}: has no reconstruction_rss/esc dataset; use source='kspace'.")
            img = np.asarray(f[names[0]][int(index)], dtype=np.float32)[None]
        else:
            k = np.asarray(f["kspace"][int(index)])
            x = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
            if x.ndim == 3:  # multi-coil
                if output == "complex":
                    raise InputError(f"{path}: multi-coil k-space has no single complex image without coil maps; "
                                     f"use output='magnitude' (root-sum-of-squares).")
                x = np.sqrt((np.abs(x) ** 2).sum(axis=0))
            if crop is not None:
                x = _centre_crop(x, crop)
            img = np.stack([x.real, x.imag]) if output == "complex" else np.abs(x)[None]
            img = img.astype(np.float32)
    if crop is not None and source == "reconstruction":
        img = _centre_crop(img, crop)
    geo = info["geometry"].get("reconSpace") or {}
    h, w = img.shape[-2:]
    sx = sy = sz = 1.0
    if geo:
        fov, mat = geo["fov_mm"], geo["matrix"]
        if all(np.isfinite(fov[:2])) and all(np.isfinite(mat[:2])) and min(mat[:2]) > 0:
            sx, sy = fov[0] / mat[0], fov[1] / mat[1]
        if np.isfinite(fov[2]) and fov[2] > 0:
            sz = fov[2]
    affine = np.diag([sy, sx, sz, 1.0])
    affine[:3, 3] = [-(h - 1) / 2 * sy, -(w - 1) / 2 * sx, float(index) * sz]
    return img, affine


class LoadFastMRISliced(MapTransform):
    """Load ``data[key]`` (a fastMRI file) at slice ``data[slice_key]`` as a MetaTensor ``(C, H, W)`` with its affine
    and ``filename_or_obj``; see :func:`load_fastmri_slice` for ``source``, ``output`` and ``crop``."""

    def __init__(
        self,
        keys: KeysCollection,
        slice_key: str = "slice_index",
        source: str = "kspace",
        output: str = "complex",
        crop: Sequence[int] | None = (320, 320),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.slice_key, self.source, self.output, self.crop = slice_key, source, output, crop

    def __call__(self, data: Mapping[Hashable, Any]) -> dict:
        d = dict(data)
        if self.slice_key not in d:
            raise InputError(f"the datalist item has no {self.slice_key!r}; expand it with fastmri_slice_items.")
        for key in self.key_iterator(d):
            path = str(d[key])
            arr, affine = load_fastmri_slice(path, int(d[self.slice_key]), self.source, self.output, self.crop)
            d[key] = MetaTensor(torch.from_numpy(arr), affine=torch.as_tensor(affine),
                                meta={"filename_or_obj": path, "slice_index": int(d[self.slice_key])})
        return d
