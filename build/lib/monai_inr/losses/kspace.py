"""Masked k-space loss (Dual-ArbNet eq. 5) and Dual-ArbNet's full objective L1 + lambda_K * L_K (eq. 6).

J. Zhang et al., "Dual Arbitrary Scale Super-Resolution for Multi-contrast MRI", MICCAI 2023, section 2.2 ("Loss
Function"), after the K-loss of Zhou & Zhou, "DuDoRNet", CVPR 2020.

``L_K = || (K_SR - K_HR) * M ||`` with ``K = F(I)`` the centred unitary 2D FFT
(:func:`monai_inr.transforms.functional.centred_fft`) of the SR and HR images and ``M`` a binary mask built from the
central block of the spectrum that the LR image kept (the k-space crop of :class:`~monai_inr.transforms.KSpaceCrop`,
indices :func:`~monai_inr.transforms.functional.kspace_crop_slice`). The two published conventions differ:

* ``mask="paper"``: "the value of mask M is set to 0 in the high-frequency cut-off region, otherwise set to 1", i.e.
  ``M = 1`` on the central LR block (the frequencies the LR image measured): k-space data consistency.
* ``mask="code"``: the public code zeroes the central LR-sized block, ``M = 1`` outside it, so the loss sees only the
  frequencies missing from the LR image.
* ``mask="none"``: the whole spectrum.

and in the distance: the paper says an L2 loss (``distance="l2"``: mean of ``|.|^2``), the code takes the mean
absolute value (``distance="l1"``). Both means run over every k-space sample (masked-out samples count as zeros), per
batch item and channel, like the public code. Images are ``(B, C, H, W)``: one real channel (magnitude), or
``complex_channels=True`` with (real, imaginary) channel pairs (the paper's complex data).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torch.nn.modules.loss import _Loss

from monai_inr.transforms.functional import centred_fft, kspace_crop_slice

__all__ = ["kspace_mask", "KSpaceLoss", "L1KSpaceLoss"]

_MASKS = ("paper", "code", "none")


def kspace_mask(
    shape: Sequence[int], lr_shape: Sequence[int], mask: str = "paper", device=None, dtype=torch.float32
) -> torch.Tensor:
    """Binary mask ``(H, W)`` over a centred spectrum of ``shape`` for an LR image of ``lr_shape``.

    The central block is the one :func:`~monai_inr.transforms.functional.kspace_crop` keeps
    (``[N//2 - M//2, N//2 - M//2 + M)`` per axis). ``"paper"``: 1 inside it; ``"code"``: 1 outside it; ``"none"``: 1
    everywhere.
    """
    if mask not in _MASKS:
        raise ValueError(f"mask must be one of {_MASKS}, got {mask!r}.")
    if len(shape) != len(lr_shape):
        raise ValueError(f"shape {tuple(shape)} and lr_shape {tuple(lr_shape)} must have the same length.")
    m = torch.zeros(tuple(int(s) for s in shape), device=device, dtype=dtype)
    if mask == "none":
        return m + 1
    block = tuple(kspace_crop_slice(int(n), min(int(k), int(n))) for n, k in zip(shape, lr_shape))
    m[block] = 1
    return m if mask == "paper" else 1 - m


def _to_complex(x: torch.Tensor, complex_channels: bool) -> torch.Tensor:
    if x.is_complex():
        return x
    if complex_channels:
        if x.shape[1] % 2:
            raise ValueError(f"complex_channels needs (real, imaginary) channel pairs, got {x.shape[1]} channels.")
        return torch.complex(x[:, 0::2].float(), x[:, 1::2].float())
    return x.float().to(torch.complex64)


class KSpaceLoss(_Loss):
    """Masked k-space loss ``L_K`` of Dual-ArbNet (eq. 5); see the module docstring for the conventions.

    Args:
        lr_shape: in-plane size of the LR image the mask is built from (Dual-ArbNet trains on 32x32 LR patches); the
            call's ``lr_shape`` overrides it. Needed unless ``mask="none"``.
        mask: ``"paper"`` (default), ``"code"`` or ``"none"``.
        distance: ``"l2"`` (paper: mean squared magnitude) or ``"l1"`` (code: mean absolute magnitude).
        complex_channels: inputs hold (real, imaginary) channel pairs; else each channel is a real image.
        reduction: ``"mean"`` (over batch, channels and k-space samples), ``"sum"`` or ``"none"`` (``(B, C')``).
    """

    def __init__(
        self,
        lr_shape: Sequence[int] | int | None = None,
        mask: str = "paper",
        distance: str = "l2",
        complex_channels: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction=reduction)
        if mask not in _MASKS:
            raise ValueError(f"mask must be one of {_MASKS}, got {mask!r}.")
        if distance not in ("l1", "l2"):
            raise ValueError(f"distance must be 'l1' or 'l2', got {distance!r}.")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
        if isinstance(lr_shape, int):
            lr_shape = (lr_shape, lr_shape)
        self.lr_shape = None if lr_shape is None else tuple(int(v) for v in lr_shape)
        self.mask = mask
        self.distance = distance
        self.complex_channels = bool(complex_channels)

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, lr_shape: Sequence[int] | None = None
    ) -> torch.Tensor:
        if input.shape != target.shape or input.ndim != 4:
            raise ValueError(
                f"KSpaceLoss expects two (B, C, H, W) tensors of the same shape, got {tuple(input.shape)} and "
                f"{tuple(target.shape)}."
            )
        lr = tuple(lr_shape) if lr_shape is not None else self.lr_shape
        if lr is None and self.mask != "none":
            raise ValueError("KSpaceLoss needs the LR shape (lr_shape) to build the mask.")
        diff = _to_complex(input, self.complex_channels) - _to_complex(target, self.complex_channels)
        k = centred_fft(diff, dims=(-2, -1))  # F(sr) - F(hr) = F(sr - hr): one FFT
        if self.mask != "none":
            k = k * kspace_mask(input.shape[-2:], lr, self.mask, device=k.device)
        mag = k.abs()
        per = (mag * mag if self.distance == "l2" else mag).mean(dim=(-2, -1))
        if self.reduction == "mean":
            return per.mean()
        if self.reduction == "sum":
            return per.sum()
        return per


class L1KSpaceLoss(nn.Module):
    """Dual-ArbNet's objective (eq. 6): ``L1(sr, hr) + kspace_weight * L_K(sr, hr)`` with ``kspace_weight = 0.05``.

    Args:
        kspace_weight: ``lambda_K`` (0.05 in the paper; 0 disables the k-space term).
        lr_shape, mask, distance, complex_channels: see :class:`KSpaceLoss`.
    """

    def __init__(
        self,
        kspace_weight: float = 0.05,
        lr_shape: Sequence[int] | int | None = (32, 32),
        mask: str = "paper",
        distance: str = "l2",
        complex_channels: bool = False,
    ) -> None:
        super().__init__()
        if not kspace_weight >= 0:
            raise ValueError(f"kspace_weight must be >= 0, got {kspace_weight}.")
        self.kspace_weight = float(kspace_weight)
        self.l1 = nn.L1Loss()
        self.kspace = KSpaceLoss(lr_shape, mask, distance, complex_channels)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = self.l1(input, target)
        if self.kspace_weight > 0:
            loss = loss + self.kspace_weight * self.kspace(input, target)
        return loss
