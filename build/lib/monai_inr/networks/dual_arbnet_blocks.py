"""Dual-ArbNet's implicit fusion decoder: the attention fusion branch and the modulated implicit decoding function.

J. Zhang, Y. Chi, J. Lyu, W. Yang, Y. Tian, "Dual Arbitrary Scale Super-Resolution for Multi-contrast MRI", MICCAI 2023
(LNCS 14229, pp. 282-292), section 2.2, eqs. (2)-(4).

Layout (``C_f = 2 * hidden`` channels with a reference, ``hidden`` without):

* **LR side** (per-pixel maps, computed on the encoder grids): the 3x3-unfolded encoder features ``F_z`` (``9 * C``
  channels) go through the first fusion projection (``1x1`` conv ``9 C -> C_f`` per branch; the paper's
  ``cat(F_tar, F_ref)`` followed by one linear map is the sum of one map per branch) and through the skip branch
  (``1x1 -> sin -> 1x1``, eq. 4). Both are point-wise, so applying them before the nearest up-sampling of eq. (1) is
  *exactly* the same as applying them after it, at ``1 / s^2`` of the cost and memory (the unfolded ``9 C``-channel map
  is never materialised on the HR grid). A ``1x1`` convolution over the unfolded features is computed as the
  equivalent 3x3 convolution (same parameters, same result).
* **HR side** (on the target HR grid): ``F^(0) = ReLU(P_tar + P_ref)``, five residual fusion layers
  ``F^(i) = L_i(F^(i-1)) + F^(i-1)`` with channel + spatial attention (eq. 2), each ``F^(i)`` split by channels into a
  target and a reference half; the implicit decoding function (IDF, eq. 3)
  ``f^(0) = sin(W_0 [1/S_tar, 1/S_ref, P] + b_0)``, ``f_z^(i) = sin((W_i f_z^(i-1) + b_i) * F^(i)_z)``, shared by both
  contrasts, and the output ``I_z = W_out f_z^(5) + b_out + Skip(F_z)`` (eq. 4).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from monai_inr.networks.blocks import CBAM, Sine, conv_nd

__all__ = ["AttentionFusionLayer", "ImplicitFusionDecoder", "unfolded_conv"]


def unfolded_conv(x: torch.Tensor, conv: nn.Conv2d, unfold: bool = True) -> torch.Tensor:
    """``conv`` (a 1x1 convolution over ``9 C`` channels) applied to the 3x3 unfolding of ``x`` ``(B, C, H, W)``.

    The unfolding (``F.unfold(x, 3, padding=1)``: channel ``c * 9 + 3 * di + dj`` holds ``x[c]`` shifted by
    ``(di - 1, dj - 1)``, zero outside) followed by a 1x1 convolution equals a 3x3 convolution whose weight is the 1x1
    weight reshaped to ``(out, C, 3, 3)``; that is what is computed. ``unfold=False``: plain 1x1 convolution.
    """
    if not unfold:
        return conv(x)
    w = conv.weight
    c = x.shape[1]
    return F.conv2d(x, w.reshape(w.shape[0], c, 3, 3), conv.bias, padding=1)


class AttentionFusionLayer(nn.Module):
    """One layer of Dual-ArbNet's fusion branch (eq. 2): ``F + L(F)`` with ``L`` = residual block body
    (``num_convs`` ``kernel_size`` convolutions with ReLU in between) followed by CBAM channel + spatial attention.

    Args:
        channels: fused feature channels.
        num_convs: convolutions in the block body (2 as in EDSR/RCAN blocks).
        kernel_size: convolution kernel size.
        reduction: channel-attention reduction (16 in the code).
        spatial_kernel: spatial-attention kernel (3 in the code).
        spatial_dims: 2 (Dual-ArbNet) or 3.
    """

    def __init__(
        self,
        channels: int,
        num_convs: int = 2,
        kernel_size: int = 3,
        reduction: int = 16,
        spatial_kernel: int = 3,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers.append(conv_nd(spatial_dims, channels, channels, kernel_size))
            if i < num_convs - 1:
                layers.append(nn.ReLU(inplace=True))
        layers.append(CBAM(spatial_dims, channels, reduction, spatial_kernel))
        self.body = nn.Sequential(*layers)
        self.receptive_radius = num_convs * (kernel_size // 2) + spatial_kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ImplicitFusionDecoder(nn.Module):
    """Dual-ArbNet's implicit fusion decoder (Zhang et al., MICCAI 2023, section 2.2, eqs. 2-4); 2D.

    The LR-side methods (:meth:`fusion_projection`, :meth:`skip`) run on the encoder grids; :meth:`forward` runs on the
    target HR grid after the caller has nearest-upsampled (gathered) their outputs there (see the module docstring).

    Args:
        feature_channels: encoder channels ``C`` (64 in the paper).
        out_channels: image channels (1 magnitude, 2 complex real/imaginary).
        hidden: width of the IDF layers (64); the fusion branch has ``2 * hidden`` channels with a reference (split in
            a target and a reference half per layer) and ``hidden`` without.
        num_layers: fusion layers = modulated IDF layers (5); the IDF has ``num_layers + 1`` sine layers.
        fusion_convs, kernel_size, reduction, spatial_kernel: see :class:`AttentionFusionLayer`.
        skip_hidden: hidden width of the skip branch ``1x1 -> sin -> 1x1``.
        unfold: 3x3 feature unfolding (``9 C`` channels into the projections), as the paper.
        use_reference: the reference branch; ``False`` is the paper's single-contrast ablation ("w/o ref", Table 2).
        use_scale: feed ``1/S_tar`` (and ``1/S_ref``) to the IDF ("w/o scale" ablation when ``False``).
        use_coord: feed the relative coordinate ``P`` to the IDF ("w/o coord" ablation when ``False``).
        omega: sine frequency factor of the IDF and skip (1 = plain ``sin``, as the paper).
    """

    def __init__(
        self,
        feature_channels: int = 64,
        out_channels: int = 1,
        hidden: int = 64,
        num_layers: int = 5,
        fusion_convs: int = 2,
        kernel_size: int = 3,
        reduction: int = 16,
        spatial_kernel: int = 3,
        skip_hidden: int = 64,
        unfold: bool = True,
        use_reference: bool = True,
        use_scale: bool = True,
        use_coord: bool = True,
        omega: float = 1.0,
    ) -> None:
        super().__init__()
        if num_layers < 1 or hidden < 1:
            raise ValueError(f"num_layers and hidden must be >= 1, got {num_layers} and {hidden}.")
        self.feature_channels = int(feature_channels)
        self.out_channels = int(out_channels)
        self.hidden = int(hidden)
        self.num_layers = int(num_layers)
        self.unfold = bool(unfold)
        self.use_reference = bool(use_reference)
        self.use_scale = bool(use_scale)
        self.use_coord = bool(use_coord)
        self.fusion_channels = self.hidden * (2 if self.use_reference else 1)
        in_ch = self.feature_channels * (9 if self.unfold else 1)
        # eq. (2), F^(0): one linear map of cat(F_tar, F_ref) == a map per branch, summed (bias on the target one)
        self.project_target = nn.Conv2d(in_ch, self.fusion_channels, 1, bias=True)
        self.project_reference = nn.Conv2d(in_ch, self.fusion_channels, 1, bias=False) if self.use_reference else None
        self.fusion = nn.ModuleList(
            [
                AttentionFusionLayer(self.fusion_channels, fusion_convs, kernel_size, reduction, spatial_kernel)
                for _ in range(self.num_layers)
            ]
        )
        # eq. (3): f^(0) from (1/S_tar, 1/S_ref, P), then num_layers modulated 1x1 layers, shared by both contrasts
        self.code_channels = (1 + int(self.use_reference)) * int(self.use_scale) + 2 * int(self.use_coord)
        self.idf_first = nn.Conv2d(max(1, self.code_channels), self.hidden, 1)
        self.idf = nn.ModuleList([nn.Conv2d(self.hidden, self.hidden, 1) for _ in range(self.num_layers)])
        self.idf_out = nn.Conv2d(self.hidden, self.out_channels, 1)
        self.sine = Sine(omega)
        # eq. (4): Skip = 1x1 -> sin -> 1x1 over the (unfolded) features
        self.skip_in = nn.Conv2d(in_ch, skip_hidden, 1)
        self.skip_out = nn.Conv2d(skip_hidden, self.out_channels, 1)
        self.receptive_radius_hr = sum(layer.receptive_radius for layer in self.fusion)

    # ---------------------------------------------------------------------------------------------------- LR side
    def fusion_projection(self, features: torch.Tensor, branch: str = "target") -> torch.Tensor:
        """The branch's share of ``F^(0)`` before the ReLU, on its own grid: ``(B, C_f, h, w)``."""
        if branch == "target":
            return unfolded_conv(features, self.project_target, self.unfold)
        if branch == "reference":
            if self.project_reference is None:
                raise ValueError("this decoder was built with use_reference=False (single-contrast ablation).")
            return unfolded_conv(features, self.project_reference, self.unfold)
        raise ValueError(f"branch must be 'target' or 'reference', got {branch!r}.")

    def skip(self, features: torch.Tensor) -> torch.Tensor:
        """``Skip(F_z)`` of eq. (4) on the feature grid: ``(B, out_channels, h, w)``."""
        return self.skip_out(self.sine(unfolded_conv(features, self.skip_in, self.unfold)))

    # ---------------------------------------------------------------------------------------------------- HR side
    def coordinate_code(
        self, inv_scale_target: torch.Tensor, inv_scale_reference: torch.Tensor | None, rel_coord: torch.Tensor
    ) -> torch.Tensor:
        """IDF input ``(B, code_channels, H, W)`` from ``1/S`` values ``(B,)`` and ``rel_coord``
        ``(B or 1, 2, H, W)``."""
        b = inv_scale_target.shape[0]
        h, w = rel_coord.shape[-2:]
        parts = []
        if self.use_scale:
            parts.append(inv_scale_target.reshape(b, 1, 1, 1).expand(b, 1, h, w))
            if self.use_reference:
                if inv_scale_reference is None:
                    raise ValueError("the reference scale is needed with use_reference=True.")
                parts.append(inv_scale_reference.reshape(b, 1, 1, 1).expand(b, 1, h, w))
        if self.use_coord:
            parts.append(rel_coord.expand(b, 2, h, w))
        if not parts:
            return rel_coord.new_zeros(b, 1, h, w)
        return torch.cat(parts, dim=1).to(rel_coord.dtype)

    def forward(
        self,
        fused0: torch.Tensor,
        code: torch.Tensor,
        skip_target: torch.Tensor,
        skip_reference: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Decode on the HR grid.

        Args:
            fused0: ``P_tar + P_ref`` gathered on the HR grid, before the ReLU: ``(B, C_f, H, W)``.
            code: :meth:`coordinate_code` ``(B, code_channels, H, W)``.
            skip_target: ``Skip(F_tar)`` on the HR grid ``(B, out, H, W)``.
            skip_reference: ``Skip(F_ref)`` on the HR grid, to also decode the reference contrast (else ``None``).

        Returns:
            ``(target, reference or None)``, each ``(B, out_channels, H, W)``.
        """
        fused = torch.relu(fused0)
        f0 = self.sine(self.idf_first(code))
        want_ref = skip_reference is not None and self.use_reference
        f_t = f0
        f_r = f0 if want_ref else None
        h = self.hidden
        for layer, lin in zip(self.fusion, self.idf):
            fused = layer(fused)
            f_t = self.sine(lin(f_t) * fused[:, :h])
            if f_r is not None:
                f_r = self.sine(lin(f_r) * fused[:, h : 2 * h])
        out_t = self.idf_out(f_t) + skip_target
        out_r = self.idf_out(f_r) + skip_reference if f_r is not None else None
        return out_t, out_r

    def hr_workspace_channels(self) -> int:
        """Estimated peak float values alive per HR pixel during an inference forward pass (memory planning)."""
        return 4 * self.fusion_channels + 4 * self.hidden + 4 * self.out_channels + self.code_channels
