"""Randomised physical MR acquisition of an HR patch onto an exact LR grid, for training arbitrary-scale SR networks.

A real low-resolution scan is not a cubic-spline resize of the high-resolution anatomy: a 3D acquisition truncates
k-space along every axis, a 2D multi-slice one integrates each thick slice against its slice profile and truncates
k-space in-plane, and both add complex Gaussian noise before the magnitude is taken (Rician statistics). Training on
such inputs (alongside spline ones) is what lets a network beat interpolation on real scans; see the degradation model
in the README's data section.

:class:`RandPhysicalAcquisition` draws, per call, the acquisition type (3D or 2D multi-slice along the most
down-sampled axis), the slice profile (box or Gaussian, FWHM = slice spacing) and the SNR (log-uniform in
``snr_range``, measured against a reference level such as the white-matter mean: ``sigma = reference / SNR``), and
maps ``(C, *hr)`` to ``(C, *lr)`` with ``lr = round(hr / scale)`` per axis: the LR grid covers the same field of view
(cell-centred, :mod:`monai_inr.coords`), exactly as :func:`~monai_inr.transforms.functional.resize_cell_centred`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable, Transform

from monai_inr import coords
from monai_inr.transforms import functional as Fn

__all__ = ["RandPhysicalAcquisition", "WhiteMatterLeveld", "white_matter_level"]


def white_matter_level(image, mask=None, quantile: float = 0.8) -> float:
    """Robust white-matter level of a T1-weighted brain image: the ``quantile`` of the voxels inside ``mask`` (or
    above 10 % of the maximum when no mask is given). White matter is the brightest and largest tissue class of a
    T1w brain (about 40 % of the brain), so the 80th percentile lies inside it."""
    data = torch.as_tensor(image).detach().float().reshape(-1)
    if mask is not None:
        data = data[torch.as_tensor(mask).reshape(-1) > 0]
    else:
        data = data[data > 0.1 * float(data.max())]
    if data.numel() == 0:
        raise ValueError("white_matter_level: no foreground voxels.")
    return float(torch.quantile(data[:: max(1, data.numel() // 1_000_000)], quantile))


class RandPhysicalAcquisition(Randomizable, Transform):
    """Randomised physical acquisition ``(C, *hr)`` -> ``(C, *round(hr / scale))`` (see the module docstring).

    Args:
        snr_range: ``(low, high)`` SNR (reference level / noise sigma), drawn log-uniformly; ``None``: no noise.
        noise_prob: probability of adding noise to a sample.
        prob_3d: probability of a 3D acquisition (k-space truncation along every axis); otherwise 2D multi-slice
            along the axis with the largest factor (ties broken at random).
        profiles: slice profiles to draw from for 2D acquisitions (``"box"``, ``"gaussian"``).
        slice_gap: ``(low, high)`` extra slice thickness as a fraction of the slice spacing (0 = contiguous slices;
            negative values would be overlap and are refused).

    Call as ``t(hr, scale=(s0, s1, s2), reference=level)``; ``reference`` (the white-matter level of the whole image,
    :func:`white_matter_level`) sets the noise sigma; without it the patch's own 99th percentile is used.
    """

    def __init__(
        self,
        snr_range: Sequence[float] | None = (10.0, 40.0),
        noise_prob: float = 1.0,
        prob_3d: float = 0.5,
        profiles: Sequence[str] = ("box", "gaussian"),
        slice_gap: Sequence[float] = (0.0, 0.0),
    ) -> None:
        if snr_range is not None:
            lo, hi = (float(v) for v in snr_range)
            if not (0 < lo <= hi and math.isfinite(hi)):
                raise ValueError(f"RandPhysicalAcquisition: snr_range must be 0 < low <= high, got {snr_range}.")
            self.snr_range: tuple[float, float] | None = (lo, hi)
        else:
            self.snr_range = None
        for name, p in (("noise_prob", noise_prob), ("prob_3d", prob_3d)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"RandPhysicalAcquisition: {name} must be in [0, 1], got {p}.")
        bad = [p for p in profiles if p not in ("box", "gaussian")]
        if bad or not profiles:
            raise ValueError(f"RandPhysicalAcquisition: profiles must be 'box' and/or 'gaussian', got {profiles}.")
        g_lo, g_hi = (float(v) for v in slice_gap)
        if not 0.0 <= g_lo <= g_hi:
            raise ValueError(f"RandPhysicalAcquisition: slice_gap must be 0 <= low <= high, got {slice_gap}.")
        self.noise_prob = float(noise_prob)
        self.prob_3d = float(prob_3d)
        self.profiles = tuple(profiles)
        self.slice_gap = (g_lo, g_hi)
        self.last: dict = {}

    def randomize(self, factors: Sequence[float]) -> None:
        nd = len(factors)
        three_d = self.R.rand() < self.prob_3d
        f = np.asarray(factors, dtype=float)
        candidates = np.flatnonzero(np.isclose(f, f.max()))
        axis = None if three_d else int(candidates[self.R.randint(len(candidates))])
        profile = self.profiles[self.R.randint(len(self.profiles))]
        gap = self.R.uniform(*self.slice_gap) if self.slice_gap[1] > 0 else 0.0
        snr = None
        if self.snr_range is not None and self.R.rand() < self.noise_prob:
            lo, hi = self.snr_range
            snr = float(math.exp(self.R.uniform(math.log(lo), math.log(hi))))
        self.last = {"slice_axis": axis, "profile": profile, "gap": gap, "snr": snr, "ndim": nd}

    def __call__(self, img, scale: Sequence[float], reference: float | None = None) -> torch.Tensor:
        data = torch.as_tensor(img.as_tensor() if hasattr(img, "as_tensor") else img).float()
        spatial = tuple(int(n) for n in data.shape[1:])
        factors = tuple(float(v) for v in scale)
        if len(factors) != len(spatial):
            raise ValueError(f"RandPhysicalAcquisition: {len(factors)} factors for {len(spatial)} spatial axes.")
        out_shape = coords.scaled_shape(spatial, [1.0 / v for v in factors])
        self.randomize(factors)
        axis = self.last["slice_axis"]
        x = data
        if axis is not None:  # 2D multi-slice: slice profile along the slice axis (FWHM = spacing x (1 + gap))
            thickness = spatial[axis] / out_shape[axis] * (1.0 + self.last["gap"])
            x = Fn.thick_slice(x, axis, out_shape[axis], profile=self.last["profile"], thickness=thickness)
        kdims = [1 + a for a in range(len(spatial)) if a != axis]
        z = Fn.kspace_crop(x, [out_shape[d - 1] for d in kdims], kdims, align="cell", amplitude_correction=True)
        if self.last["snr"] is not None:
            level = float(reference) if reference is not None else float(torch.quantile(data.reshape(-1), 0.99))
            sigma = max(level, 1e-6) / self.last["snr"]
            g = torch.from_numpy(self.R.standard_normal((2, *z.shape)).astype(np.float32))
            z = z + torch.complex(g[0], g[1]) * sigma
            self.last["sigma"] = sigma
        return z.abs().to(torch.float32).contiguous()


class WhiteMatterLeveld(MapTransform):
    """Store :func:`white_matter_level` of ``keys[0]`` (inside ``mask_key`` when given) under ``level_key``, e.g. as
    the noise reference of :class:`RandPhysicalAcquisition` in a training sampler (``reference_key``)."""

    def __init__(
        self,
        keys: KeysCollection,
        level_key: str = "wm_level",
        mask_key: str | None = None,
        quantile: float = 0.8,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.level_key, self.mask_key, self.quantile = level_key, mask_key, float(quantile)

    def __call__(self, data):
        d = dict(data)
        key = self.first_key(d)
        if key == []:
            return d
        mask = d.get(self.mask_key) if self.mask_key is not None else None
        d[self.level_key] = torch.tensor(white_matter_level(d[key], mask, self.quantile), dtype=torch.float32)
        return d
