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

from monai_inr.transforms.degradation import PhysicalAcquisition, white_matter_reference

__all__ = ["RandPhysicalAcquisition", "WhiteMatterLeveld"]


class RandPhysicalAcquisition(Randomizable, Transform):
    """Randomised physical acquisition ``(C, *hr)`` -> ``(C, *round(hr / scale))`` (see the module docstring).

    Args:
        snr_range: ``(low, high)`` SNR (reference level / noise sigma), drawn log-uniformly; ``None``: no noise.
        noise_prob: probability of adding noise to a sample.
        prob_3d: probability of a 3D acquisition (k-space truncation along every axis); otherwise 2D multi-slice
            along the axis with the largest factor (ties broken at random).
        profiles: slice profiles to draw from for 2D acquisitions (``"box"``, ``"gaussian"``).
        slice_gap: ``(low, high)`` gap between slices as a fraction of the slice spacing, drawn uniformly (``[0, 1)``;
            0 = contiguous slices), as :class:`~monai_inr.transforms.degradation.PhysicalAcquisition`.

    Call as ``t(hr, scale=(s0, s1, s2), reference=level)``; ``reference`` (the white-matter level of the whole image,
    :func:`~monai_inr.transforms.degradation.white_matter_reference`) sets the noise sigma; without it, the patch's
    own white-matter estimate is used. Each call composes one :class:`~monai_inr.transforms.degradation.
    PhysicalAcquisition` with the drawn settings (one home for the acquisition model).
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
        if not 0.0 <= g_lo <= g_hi < 1.0:
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
        factors = tuple(float(v) for v in scale)
        if len(factors) != data.ndim - 1:
            raise ValueError(f"RandPhysicalAcquisition: {len(factors)} factors for {data.ndim - 1} spatial axes.")
        self.randomize(factors)
        acquire = PhysicalAcquisition(
            scale=factors,
            slice_axis=self.last["slice_axis"],
            profile=self.last["profile"],
            slice_gap=self.last["gap"],
            snr=self.last["snr"],
        ).set_random_state(state=self.R)
        out = acquire(data, scale=factors, reference=reference)
        self.last.update(sigma=acquire.last["sigma"], reference=acquire.last["reference"])
        return (out.as_tensor() if hasattr(out, "as_tensor") else out).contiguous()


class WhiteMatterLeveld(MapTransform):
    """Store :func:`~monai_inr.transforms.degradation.white_matter_reference` of ``keys[0]`` (inside ``mask_key`` when given) under ``level_key``, e.g. as
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
        level = white_matter_reference(d[key], mask=mask, quantile=self.quantile)
        d[self.level_key] = torch.tensor(level, dtype=torch.float32)
        return d
