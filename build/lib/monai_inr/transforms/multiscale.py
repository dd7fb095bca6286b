"""Several low-resolution versions of the same images in one sample (ArRFR's multi-factor training, Yang 2025, 3.1).

ArRFR down-samples the degraded sodium and the T2w slice by every ``k in {1, 2, 3, 4}`` and averages the loss over
``k`` (eq. 8), so one training sample carries all factors. :class:`MultiScaleDownsampled` writes them under
``"{key}_x{k:g}"`` (see :func:`lr_key`) with the project's degradation operators:

* ``mode="cubic"``: :class:`~monai_inr.transforms.CubicDownsample` (cell-centred, the LR grid covers the HR field of
  view; ``round(N / k)`` pixels; non-integer ``k`` allowed);
* ``mode="decimate"``: :class:`~monai_inr.transforms.StrideDecimation` (``x[::k, ::k]``, the public ArRFR code; the LR
  grid keeps the first pixel centre, so it is shifted by ``(k - 1) / 2`` HR pixels against the HR FOV: the affine says
  so and :func:`lr_query_grid` maps the HR pixel centres into it exactly).

``k = 1`` copies the image (both operators are the identity there).
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_inr import coords

from .degradation import CubicDownsample, StrideDecimation
from .utils import as_affine

__all__ = ["MultiScaleDownsampled", "lr_key", "lr_query_grid", "DOWNSAMPLE_MODES", "make_downsampler"]

DOWNSAMPLE_MODES = ("cubic", "decimate")


def lr_key(key: str, k: float) -> str:
    """Name of the factor-``k`` version of ``key``: ``"sodium_x2"``, ``"t2w_x2.5"``."""
    return f"{key}_x{float(k):g}"


def make_downsampler(mode: str, k: float, anti_alias: bool = False):
    """The array transform for one factor (``None`` for ``k = 1``)."""
    if mode not in DOWNSAMPLE_MODES:
        raise ValueError(f"mode must be one of {DOWNSAMPLE_MODES}, got {mode!r}.")
    if float(k) == 1.0:
        return None
    if mode == "cubic":
        return CubicDownsample(float(k), order=3, anti_alias=anti_alias)
    if float(k) != int(k):
        raise ValueError(f"stride decimation needs integer factors, got {k}.")
    return StrideDecimation(int(k))


class MultiScaleDownsampled(MapTransform):
    """For every key and factor ``k`` in ``scales``, add ``data[lr_key(key, k)]`` = the image down-sampled by ``k``.

    Args:
        keys: images to down-sample (channel first, any spatial dims; ArRFR: the degraded sodium and the T2w).
        scales: factors ``k >= 1``.
        mode: ``"cubic"`` or ``"decimate"`` (see the module docstring).
        anti_alias: Gaussian prefilter for ``"cubic"`` (off, as the project's cubic degradation).
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        scales: Sequence[float] = (1, 2, 3, 4),
        mode: str = "cubic",
        anti_alias: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.scales = tuple(float(k) for k in scales)
        if not self.scales or any(not np.isfinite(k) or k < 1 for k in self.scales):
            raise ValueError(f"scales must be factors >= 1, got {scales}.")
        self.mode = mode
        self.ops = {k: make_downsampler(mode, k, anti_alias) for k in self.scales}

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            for k, op in self.ops.items():
                d[lr_key(str(key), k)] = d[key].clone() if op is None else op(d[key])
        return d


def lr_query_grid(
    hr_shape: Sequence[int],
    lr_shape: Sequence[int],
    hr_affine=None,
    lr_affine=None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates and cells, in the LR image's normalised frame, of every HR pixel centre (C order).

    The HR pixel centres go through world coordinates (:mod:`monai_inr.coords`) into the LR grid, so any
    down-sampling geometry is exact (FOV-preserving cubic: the HR grid itself; stride decimation: shifted). Without
    affines both grids are taken to cover the same FOV. The cell is the HR pixel size in LR normalised units
    (``2 / N_lr`` per LR pixel). Returns ``(K, d)`` and ``(K, d)``.
    """
    hr_shape = tuple(int(n) for n in hr_shape)
    lr_shape = tuple(int(n) for n in lr_shape)
    nd = len(hr_shape)
    if hr_affine is None or lr_affine is None:
        grid = coords.normalized_grid(hr_shape, device=device, dtype=torch.float64)
        cell = coords.cell_size(hr_shape, device=device, dtype=torch.float64).expand(grid.shape[0], nd)
        return grid.to(dtype), cell.to(dtype)
    ha, la = as_affine(hr_affine), as_affine(lr_affine)
    r = ha.shape[0] - 1
    if r != nd:  # 2D images with a 4x4 affine: use the in-plane block
        ha = _sub_affine(ha, nd)
        la = _sub_affine(la, nd)
    vox = coords.normalized_to_voxel(coords.normalized_grid(hr_shape, dtype=torch.float64), hr_shape)
    lr_vox = coords.world_to_voxel(coords.voxel_to_world(vox, ha), la)
    grid = coords.voxel_to_normalized(lr_vox, lr_shape)
    # HR pixel extent in LR voxels along each LR axis (axis-aligned grids): |A_lr^-1 A_hr| diagonal
    m = np.linalg.inv(la[:nd, :nd]) @ ha[:nd, :nd]
    ext = np.abs(np.diag(m)) * 2.0 / np.asarray(lr_shape, dtype=np.float64)
    cell = torch.as_tensor(ext, dtype=torch.float64).expand(grid.shape[0], nd)
    return grid.to(device=device, dtype=dtype), cell.to(device=device, dtype=dtype)


def _sub_affine(a: np.ndarray, nd: int) -> np.ndarray:
    out = np.eye(nd + 1)
    out[:nd, :nd] = a[:nd, :nd]
    out[:nd, nd] = a[:nd, -1]
    return out
