"""Affine and metadata bookkeeping shared by the transforms (geometry itself comes from :mod:`monai_inr.coords`)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import to_affine_nd
from monai.data import get_track_meta
from monai.utils import convert_to_tensor

from monai_inr import coords

__all__ = [
    "DEGRADATION_SCALE_KEY",
    "DEGRADATION_KEY",
    "NOISE_SIGMA_KEY",
    "SNR_KEY",
    "NOISE_REFERENCE_KEY",
    "as_affine",
    "grid_affine",
    "translate_affine",
    "prepare_image",
    "image_affine",
    "wrap_output",
    "downsampling_factors",
]

#: metadata key: per-spatial-axis spacing ratio LR/HR accumulated over the degradations applied (= N_hr / N_lr for the
#: FOV-preserving ones).
DEGRADATION_SCALE_KEY = "degradation_scale"
#: metadata key: human-readable name of the degradation chain (for results tables).
DEGRADATION_KEY = "degradation"
#: metadata key (and dictionary-key suffix, ``f"{key}_{NOISE_SIGMA_KEY}"``): standard deviation of the complex Gaussian
#: noise added per real/imaginary channel (image units).
NOISE_SIGMA_KEY = "noise_sigma"
#: metadata key (and dictionary-key suffix): the signal-to-noise ratio ``reference / sigma`` that was applied.
SNR_KEY = "snr"
#: metadata key (and dictionary-key suffix): the signal level the SNR refers to (white-matter mean or its estimate).
NOISE_REFERENCE_KEY = "noise_reference"


def as_affine(affine: Any) -> np.ndarray:
    """A float64 numpy copy of a square affine (numpy, torch or MetaTensor affine)."""
    if isinstance(affine, torch.Tensor):
        affine = affine.detach().cpu().numpy()
    a = np.array(affine, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 2:
        raise ValueError(f"an affine must be a square (r+1)x(r+1) matrix, got shape {a.shape}.")
    return a


def _padded(shape: Sequence[int], rank: int) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if rank < len(shape):
        raise ValueError(f"a {rank + 1}x{rank + 1} affine cannot describe a {len(shape)}D grid {shape}.")
    return shape + (1,) * (rank - len(shape))


def grid_affine(affine: Any, in_shape: Sequence[int], out_shape: Sequence[int]) -> np.ndarray:
    """:func:`monai_inr.coords.fov_affine` for any affine rank >= the grid's (MONAI keeps 4x4 affines for 2D images)."""
    a = as_affine(affine)
    r = a.shape[0] - 1
    return coords.fov_affine(a, _padded(in_shape, r), _padded(out_shape, r))


def translate_affine(affine: Any, shift: Sequence[float]) -> np.ndarray:
    """Affine whose voxel ``v`` is voxel ``v + shift`` of ``affine`` (e.g. a crop starting at ``shift``)."""
    a = as_affine(affine)
    r = a.shape[0] - 1
    s = np.zeros(r)
    s[: len(shift)] = np.asarray(shift, dtype=np.float64)
    out = a.copy()
    out[:r, r] = a[:r, r] + a[:r, :r] @ s
    return out


def image_affine(img: Any, ndim: int) -> np.ndarray:
    """The voxel-to-world affine of a MetaTensor, else the identity of size ``max(ndim, 3) + 1`` (MONAI's default)."""
    if isinstance(img, MetaTensor):
        return as_affine(img.affine)
    return np.eye(max(ndim, 3) + 1)


def prepare_image(
    img: Any, affine: Any | None = None, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, np.ndarray]:
    """``(tensor, affine)``: ``img`` as a (Meta)Tensor following ``get_track_meta()``, and its affine.

    An explicit ``affine`` (for numpy/torch input) takes precedence over a MetaTensor's own. A 2D/3D image whose
    MetaTensor affine has a lower rank than the image is an error.
    """
    t = convert_to_tensor(img, track_meta=get_track_meta(), dtype=dtype)
    if t.ndim < 2:
        raise ValueError(f"expected a channel-first image (C, *spatial), got shape {tuple(t.shape)}.")
    nd = t.ndim - 1
    a = as_affine(affine) if affine is not None else image_affine(img if isinstance(img, MetaTensor) else t, nd)
    if a.shape[0] - 1 < nd:
        a = to_affine_nd(nd, a)
    return t, a


def downsampling_factors(in_shape: Sequence[int], out_shape: Sequence[int]) -> tuple[float, ...]:
    """Per-axis ``N_in / N_out``."""
    return tuple(float(i) / float(o) for i, o in zip(in_shape, out_shape))


def wrap_output(
    src: torch.Tensor,
    data: np.ndarray | torch.Tensor,
    affine: np.ndarray,
    factors: Sequence[float] | None = None,
    description: str | None = None,
) -> torch.Tensor:
    """``data`` as a float tensor carrying ``src``'s metadata with the new ``affine``.

    ``factors`` (per-axis spacing ratio new/old) are multiplied into ``meta[DEGRADATION_SCALE_KEY]`` and
    ``description`` is appended to ``meta[DEGRADATION_KEY]``. Without metadata tracking a plain tensor is returned.
    """
    out = torch.as_tensor(data)
    if isinstance(src, torch.Tensor):
        out = out.to(src.device)
    if not (get_track_meta() and isinstance(src, MetaTensor)):
        return out.as_tensor() if isinstance(out, MetaTensor) else out
    res = MetaTensor(out)
    res.copy_meta_from(src)
    res.affine = torch.as_tensor(affine, dtype=torch.float64)
    if factors is not None:
        prev = res.meta.get(DEGRADATION_SCALE_KEY)
        f = np.asarray(factors, dtype=np.float64)
        if prev is not None and np.size(prev) == f.size:
            f = f * np.asarray(prev, dtype=np.float64).reshape(-1)
        res.meta[DEGRADATION_SCALE_KEY] = tuple(float(v) for v in f)
    if description is not None:
        prev_d = res.meta.get(DEGRADATION_KEY)
        res.meta[DEGRADATION_KEY] = description if not prev_d else f"{prev_d} + {description}"
    return res


def _describe(name: str, values: Sequence[float]) -> str:
    return f"{name}(" + ",".join(f"{v:g}" for v in values) + ")"

