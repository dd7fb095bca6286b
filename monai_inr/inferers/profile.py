"""The thick-slice forward model of a subject-specific INR fit: a measured voxel is the image integrated over the
voxel's slice profile, not the image at the slice centre.

A 2D multi-slice acquisition with slices ``t`` mm thick records, at each voxel, the signal weighted by the slice
profile along the slice normal: a box ``[-t/2, t/2]`` for an ideal excitation, or approximately a Gaussian with a
full width at half maximum of ``t``. Comparing the INR at the slice centre with that value (the upstream code's
choice, kept as ``samples=0``) leaves everything between slice centres unconstrained. :class:`SliceProfileInferer`
is the training inferer that compares instead the INR averaged over ``samples`` points of the profile (stratified,
redrawn every call, so the average is unbiased over iterations) with the measured value.

Each training sample carries its contrast's ``profile`` vector: the slice normal scaled by the slice thickness, in
the shared frame's normalised coordinates (:meth:`monai_inr.data.coordinates.ContrastPair.slice_profile_vectors`;
zero for a contrast without a thick axis).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["SLICE_PROFILES", "SliceProfileInferer", "profile_offsets"]

#: slice profiles of the forward model: box (ideal excitation) or Gaussian (FWHM = slice thickness)
SLICE_PROFILES = ("box", "gaussian")
_GAUSS_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))  # FWHM 1 (one slice thickness)


def profile_offsets(profile: str, samples: int, generator: torch.Generator | None = None,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """``samples`` stratified offsets along the slice normal in slice thicknesses: one uniform draw in each of
    ``samples`` equal-probability strata of the profile (box: of ``[-1/2, 1/2]``; Gaussian: through its inverse CDF,
    FWHM 1, truncated at 3 sigma)."""
    if profile not in SLICE_PROFILES:
        raise ValueError(f"slice profile must be one of {', '.join(SLICE_PROFILES)}, got {profile!r}.")
    k = torch.arange(samples, dtype=torch.float64)
    u = (k + torch.rand(samples, generator=generator, dtype=torch.float64)) / samples
    if profile == "box":
        o = u - 0.5
    else:
        lo, hi = 0.5 * (1 + math.erf(-3 / math.sqrt(2))), 0.5 * (1 + math.erf(3 / math.sqrt(2)))
        o = _GAUSS_SIGMA * math.sqrt(2.0) * torch.erfinv(2 * (lo + u * (hi - lo)) - 1)
    return o.to(device=device, dtype=torch.float32)


class SliceProfileInferer(Inferer):
    """Training inferer of a coordinate network that integrates it over each sample's slice profile.

    ``inferer(coords (B, 3), network, profile=(B, 3))`` returns ``mean_k network(coords + o_k * profile)`` over
    ``samples`` stratified offsets ``o_k`` of ``profile`` (:func:`profile_offsets`); without ``profile`` (or with
    ``samples=0``) it is the network at the coordinates, the slice-centre model.

    Args:
        profile: ``"box"`` or ``"gaussian"`` (FWHM = slice thickness); ``"none"`` (point-sampled slices) is the
            slice-centre model whatever ``samples`` says.
        samples: points of the profile per sample and iteration (the cost of a step grows with it).
        seed: seed of the offsets' generator (a fit stays reproducible).
    """

    def __init__(self, profile: str = "box", samples: int = 4, seed: int = 0) -> None:
        super().__init__()
        if profile not in (*SLICE_PROFILES, "none"):
            raise ValueError(f"slice profile must be one of {', '.join(SLICE_PROFILES)} or none, got {profile!r}.")
        if int(samples) < 0:
            raise ValueError(f"samples must be >= 0, got {samples}.")
        self.profile, self.samples = profile, (0 if profile == "none" else int(samples))
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, profile: torch.Tensor | None = None,
                 **kwargs: Any) -> torch.Tensor:
        if profile is None or self.samples == 0:
            return network(inputs, *args, **kwargs)
        o = profile_offsets(self.profile, self.samples, self.generator, inputs.device)
        points = inputs[None] + o[:, None, None] * profile.to(inputs.dtype)[None]  # (K, B, 3)
        out = network(points.reshape(-1, inputs.shape[-1]), *args, **kwargs)
        return out.reshape(self.samples, inputs.shape[0], *out.shape[1:]).mean(0)
