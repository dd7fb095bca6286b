"""Building blocks shared by the encoders and decoders.

Everything here is dimension-agnostic (``spatial_dims`` 2 or 3) and picks its layers from MONAI's factories, so the
same block serves the 2D (Dual-ArbNet, LIIF-style) and 3D (ArSSR) networks.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Conv

__all__ = ["conv_nd", "ResidualDenseBlock", "ResidualBlock"]


def conv_nd(
    spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True
) -> nn.Module:
    """A ``spatial_dims``-D convolution with "same" zero padding (odd ``kernel_size``), stride 1."""
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd for same-size padding, got {kernel_size}.")
    conv_type = Conv[Conv.CONV, spatial_dims]
    return conv_type(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


class ResidualDenseBlock(nn.Module):
    """Residual dense block (RDB) of Zhang et al., "Residual Dense Network for Image Super-Resolution", CVPR 2018.

    ``num_layers`` densely connected ``kernel_size`` convolutions, each followed by a ReLU and producing ``growth``
    channels from the concatenation of the block input and all previous layer outputs; a 1x1 local feature fusion back
    to ``features`` channels; and the local residual connection to the block input.

    The parameters are those of the textbook block (``layers[i]`` convolves the ``features + i * growth`` concatenated
    channels). The forward pass never builds the concatenation: a convolution over concatenated inputs is the sum of
    convolutions of each input with its slice of the weight, so each layer sums per-input partial convolutions. The
    result is identical up to floating-point summation order, with about 25 % less peak memory and no concatenation
    copies (faster on CPU).

    Args:
        spatial_dims: 2 or 3.
        features: input/output channels (G0 in the paper).
        growth: channels added by each dense layer (G).
        num_layers: dense convolutions per block (C).
        kernel_size: dense convolution kernel size (3 in the paper).
    """

    def __init__(self, spatial_dims: int, features: int, growth: int, num_layers: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [conv_nd(spatial_dims, features + i * growth, growth, kernel_size) for i in range(num_layers)]
        )
        self.local_fusion = conv_nd(spatial_dims, features + num_layers * growth, features, 1)
        self.spatial_dims = int(spatial_dims)
        self.features, self.growth, self.padding = int(features), int(growth), kernel_size // 2
        self.receptive_radius = num_layers * (kernel_size // 2)

    def _conv_sum(self, inputs: list[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor | None, padding: int):
        conv = F.conv3d if self.spatial_dims == 3 else F.conv2d
        out = torch.zeros(0)
        start = 0
        for i, x in enumerate(inputs):
            c = x.shape[1]
            part = conv(x, weight[:, start : start + c], bias if i == 0 else None, 1, padding)
            out = part if i == 0 else out.add_(part)
            start += c
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(torch.relu_(self._conv_sum(feats, layer.weight, layer.bias, self.padding)))
        return self._conv_sum(feats, self.local_fusion.weight, self.local_fusion.bias, 0).add_(x)


class ResidualBlock(nn.Module):
    """``num_convs`` convolutions with a ReLU after each (the last ReLU optional) plus an identity skip, no batch norm.

    * ``num_convs=2, last_activation=False`` is the EDSR / SRResNet-without-BN residual block (conv-ReLU-conv + x);
    * ``num_convs=6, last_activation=True`` is a ResCNN block (six conv+ReLU layers + x, Du et al. 2020).

    Args:
        spatial_dims: 2 or 3.
        channels: input = output channels.
        num_convs: convolutions in the residual branch.
        kernel_size: convolution kernel size.
        last_activation: apply a ReLU after the last convolution of the branch (before the skip addition).
        res_scale: multiplier of the residual branch (EDSR residual scaling; 1 = none).
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        num_convs: int = 2,
        kernel_size: int = 3,
        last_activation: bool = False,
        res_scale: float = 1.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers.append(conv_nd(spatial_dims, channels, channels, kernel_size))
            if i < num_convs - 1 or last_activation:
                layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)
        self.res_scale = float(res_scale)
        self.receptive_radius = num_convs * (kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.res_scale != 1.0:
            y = y * self.res_scale
        return y + x
