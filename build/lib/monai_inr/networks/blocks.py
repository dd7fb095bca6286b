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

    def _conv_sum(
        self, inputs: list[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor | None, padding: int
    ) -> torch.Tensor:
        out = torch.zeros(0)
        start = 0
        for i, x in enumerate(inputs):
            c = x.shape[1]
            b = bias if i == 0 else None
            if self.spatial_dims == 3:  # explicit branches: TorchScript cannot hold a builtin in a variable
                part = F.conv3d(x, weight[:, start : start + c], b, 1, padding)
            else:
                part = F.conv2d(x, weight[:, start : start + c], b, 1, padding)
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


# ---------------------------------------------------------------------------------------------------------------------
# Attention (CBAM) and sine layers: Dual-ArbNet's fusion branch and implicit decoding function; ArRFR reuses CBAM.
# ---------------------------------------------------------------------------------------------------------------------

__all__ += ["ChannelAttention", "SpatialAttention", "CBAM", "Sine", "SineLayer"]


def _pool_dims(x: torch.Tensor) -> list[int]:
    return list(range(2, x.dim()))


class ChannelAttention(nn.Module):
    """Channel attention of CBAM (Woo et al., "CBAM: Convolutional Block Attention Module", ECCV 2018, section 3):
    ``M_c(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))`` with one MLP (``C -> C / reduction -> C``, ReLU) shared by
    the two pooled descriptors; the input is rescaled channel-wise, ``F' = M_c(F) * F``.

    With ``use_max_pool=False`` it is the squeeze-and-excitation / RCAN channel attention (average pooling only).

    Args:
        spatial_dims: 1, 2 or 3 (pooling over every spatial axis).
        channels: feature channels.
        reduction: channel reduction of the MLP's hidden layer (at least one hidden channel).
        use_max_pool: add the max-pooled descriptor (CBAM); ``False``: average pooling only.
        bias: biases in the MLP.
    """

    def __init__(
        self, spatial_dims: int, channels: int, reduction: int = 16, use_max_pool: bool = True, bias: bool = True
    ) -> None:
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError(f"channels and reduction must be >= 1, got {channels} and {reduction}.")
        hidden = max(1, channels // reduction)
        conv = Conv[Conv.CONV, spatial_dims]
        self.mlp = nn.Sequential(
            conv(channels, hidden, 1, bias=bias), nn.ReLU(inplace=True), conv(hidden, channels, 1, bias=bias)
        )
        self.spatial_dims = int(spatial_dims)
        self.use_max_pool = bool(use_max_pool)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map ``(B, C, 1, ...)`` in (0, 1)."""
        dims = _pool_dims(x)
        logits = self.mlp(x.mean(dim=dims, keepdim=True))
        if self.use_max_pool:
            logits = logits + self.mlp(x.amax(dim=dims, keepdim=True))
        return torch.sigmoid(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class SpatialAttention(nn.Module):
    """Spatial attention of CBAM (Woo et al. 2018, section 3): ``M_s(F) = sigmoid(conv_k([mean_c(F); max_c(F)]))``, a
    ``kernel_size`` convolution (2 -> 1 channels, "same" padding) over the channel-wise mean and maximum; the input is
    rescaled voxel-wise, ``F' = M_s(F) * F``.

    Args:
        spatial_dims: 1, 2 or 3.
        kernel_size: odd kernel size of the convolution (7 in CBAM; the Dual-ArbNet code uses 3).
    """

    def __init__(self, spatial_dims: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = conv_nd(spatial_dims, 2, 1, kernel_size, bias=False) if spatial_dims in (2, 3) else None
        if self.conv is None:
            if kernel_size % 2 != 1:
                raise ValueError(f"kernel_size must be odd for same-size padding, got {kernel_size}.")
            self.conv = Conv[Conv.CONV, spatial_dims](2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.kernel_size = int(kernel_size)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention map ``(B, 1, *spatial)`` in (0, 1)."""
        desc = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv(desc))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class CBAM(nn.Module):
    """Convolutional block attention module (Woo et al. 2018): :class:`ChannelAttention` followed by
    :class:`SpatialAttention` (the sequential channel-first arrangement the paper found best), optionally with an
    identity skip (``F + CBAM(F)``).

    Used by Dual-ArbNet's fusion branch (Zhang et al., MICCAI 2023, section 2.2: residual blocks with channel and
    spatial attention; code: reduction 16, spatial kernel 3) and ArRFR's feature fusion (reduction 16, kernel 7, no
    residual). ``channels`` features in and out, any spatial size.

    Args:
        spatial_dims: 1, 2 or 3.
        channels: feature channels.
        reduction: channel-attention MLP reduction.
        spatial_kernel: spatial-attention kernel size (odd).
        use_max_pool: max-pooled descriptor in the channel attention.
        residual: return ``x + attention(x)`` instead of ``attention(x)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        reduction: int = 16,
        spatial_kernel: int = 7,
        use_max_pool: bool = True,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(spatial_dims, channels, reduction, use_max_pool)
        self.spatial = SpatialAttention(spatial_dims, spatial_kernel)
        self.residual = bool(residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.spatial(self.channel(x))
        return x + y if self.residual else y


class Sine(nn.Module):
    """``sin(omega * x)``, the periodic activation of implicit decoders (Sitzmann et al., SIREN, NeurIPS 2020)."""

    def __init__(self, omega: float = 1.0) -> None:
        super().__init__()
        self.omega = float(omega)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x * self.omega) if self.omega != 1.0 else torch.sin(x)

    def extra_repr(self) -> str:
        return f"omega={self.omega:g}"


class SineLayer(nn.Module):
    """A point-wise linear map followed by a sine: ``sin(omega * (W x + b))``, on the last axis (``spatial_dims=0``:
    ``(..., in_features)``) or on the channels of a ``(B, C, *spatial)`` map (``spatial_dims`` 1-3: a 1x1
    convolution, as in Dual-ArbNet's implicit decoding function, Zhang et al. MICCAI 2023, eq. 3).

    Args:
        in_features, out_features: sizes of the linear map.
        spatial_dims: 0 for a ``nn.Linear`` on the last axis, else a kernel-1 convolution over channels.
        omega: frequency factor (1 = plain ``sin``; SIREN uses 30).
        init: ``"default"`` (PyTorch's initialisation) or ``"siren"`` (uniform ``±1/in`` for the first layer,
            ``±sqrt(6/in)/omega`` otherwise, Sitzmann et al. 2020, section 3.2).
        is_first: first layer of a SIREN stack (changes the ``"siren"`` initialisation).
        bias: learnable bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        spatial_dims: int = 0,
        omega: float = 1.0,
        init: str = "default",
        is_first: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims == 0:
            self.linear: nn.Module = nn.Linear(in_features, out_features, bias=bias)
        else:
            self.linear = Conv[Conv.CONV, spatial_dims](in_features, out_features, 1, bias=bias)
        if init not in ("default", "siren"):
            raise ValueError(f"init must be 'default' or 'siren', got {init!r}.")
        if init == "siren":
            bound = 1.0 / in_features if is_first else (6.0 / in_features) ** 0.5 / float(omega)
            with torch.no_grad():
                self.linear.weight.uniform_(-bound, bound)
        self.activation = Sine(omega)
        self.in_features, self.out_features = int(in_features), int(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(x))
