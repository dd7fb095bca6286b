"""Convolutional feature encoders without upsampling tails (the image -> latent-grid half of an INR SR network).

Every encoder maps ``(B, in_channels, *spatial)`` to ``(B, out_channels, *spatial)`` (same spatial size, "same" zero
padding, stride 1) and exposes:

* ``out_channels``: channels of the feature map;
* ``receptive_radius``: voxels of context needed on each side of an output voxel for it to be exact; a tile encoded
  with at least this much margin reproduces the untiled feature map exactly (used by the tiled
  :class:`monai_inr.inferers.ImplicitInferer`);
* ``workspace_channels``: an estimate of the peak number of activation values alive per input voxel during an
  inference forward pass (used to size tiles against a memory budget).

References:
    * RDN: Y. Zhang, Y. Tian, Y. Kong, B. Zhong, Y. Fu, "Residual Dense Network for Image Super-Resolution", CVPR 2018.
    * ArSSR: Q. Wu et al., "An Arbitrary Scale Super-Resolution Approach for 3D MR Images via Implicit Neural
      Representation", IEEE JBHI 27(2), 2023 (encoder: 3D RDN, 8 RDBs x 3 layers, growth 64, 128 output channels;
      Table V: ResCNN and SRResNet encoders).
    * ResCNN: J. Du et al., "Super-resolution reconstruction of single anisotropic 3D MR images using residual
      convolutional neural network", Neurocomputing 392, 2020.
    * SRResNet: C. Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial
      Network", CVPR 2017.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from monai_inr.networks.blocks import ResidualBlock, ResidualDenseBlock, conv_nd

__all__ = ["RDN", "ResCNN", "SRResNet", "ENCODERS", "get_encoder"]


def _check_dims(spatial_dims: int) -> int:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
    return int(spatial_dims)


class RDN(nn.Module):
    """Residual dense network (Zhang et al. 2018) without the upsampling tail, 2D or 3D.

    Layout: shallow feature extraction ``SFE1`` (in -> features) and ``SFE2`` (features -> features); ``num_blocks``
    residual dense blocks (``num_layers`` dense convolutions of ``growth`` channels + ReLU, 1x1 local fusion, local
    residual); global feature fusion (1x1 over the concatenated RDB outputs, then a ``kernel_size`` convolution);
    global residual to the SFE1 output; and a last convolution to ``out_channels``.

    Defaults are the ArSSR encoder (3D, 8 RDBs x 3 layers, growth 64, 64 features, 128 output channels): 5.92 M
    parameters, 11.8 MFLOP per input voxel, ``receptive_radius`` 28. ``out_channels=None`` drops the last convolution
    and returns the ``features``-channel map after the global residual (LIIF / Dual-ArbNet style; Dual-ArbNet uses
    ``spatial_dims=2, num_blocks=5, num_layers=10, growth=64, features=64, out_channels=None``).

    The 1x1 global fusion over the concatenation is computed as a running sum of per-block 1x1 projections
    (``global_fusion[i]`` sees the output of block ``i``): mathematically identical, but the ``num_blocks * features``
    concatenation is never materialised, which bounds inference memory. ``global_fusion[0]`` holds the bias.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: feature channels of the output, or ``None`` for no last convolution (``features`` channels).
        features: channels of the shallow/global features (G0).
        growth: growth rate of the dense layers (G).
        num_blocks: number of residual dense blocks (D).
        num_layers: dense convolutions per block (C).
        kernel_size: spatial kernel size of every non-1x1 convolution.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int | None = 128,
        features: int = 64,
        growth: int = 64,
        num_blocks: int = 8,
        num_layers: int = 3,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        sd = _check_dims(spatial_dims)
        if num_blocks < 1 or num_layers < 1:
            raise ValueError(f"num_blocks and num_layers must be >= 1, got {num_blocks} and {num_layers}.")
        self.spatial_dims = sd
        self.sfe1 = conv_nd(sd, in_channels, features, kernel_size)
        self.sfe2 = conv_nd(sd, features, features, kernel_size)
        self.blocks = nn.ModuleList(
            [ResidualDenseBlock(sd, features, growth, num_layers, kernel_size) for _ in range(num_blocks)]
        )
        self.global_fusion = nn.ModuleList(
            [conv_nd(sd, features, features, 1, bias=(i == 0)) for i in range(num_blocks)]
        )
        self.global_conv = conv_nd(sd, features, features, kernel_size)
        self.out_conv = conv_nd(sd, features, out_channels, kernel_size) if out_channels is not None else None
        self.out_channels = int(out_channels) if out_channels is not None else int(features)
        r = kernel_size // 2
        n_convs = 2 + num_blocks * num_layers + 1 + (1 if out_channels is not None else 0)
        self.receptive_radius = n_convs * r
        # f1, the global-fusion sum and its partial term, and inside a block (at the local fusion): the block input,
        # all layer outputs, the running sum and one partial convolution.
        inner = features + num_layers * growth + 2 * max(features, growth)
        self.workspace_channels = max(3 * features + inner, 2 * features + self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.sfe1(x)
        x = self.sfe2(f1)
        fused = torch.zeros(0)  # placeholder replaced by the first block (keeps the loop trace/script friendly)
        for i, (block, proj) in enumerate(zip(self.blocks, self.global_fusion)):
            x = block(x)
            fused = proj(x) if i == 0 else fused.add_(proj(x))
        x = self.global_conv(fused) + f1
        if self.out_conv is not None:
            x = self.out_conv(x)
        return x


class ResCNN(nn.Module):
    """3D residual CNN encoder (Du et al. 2020) as used in ArSSR Table V: 1 -> 64, residual blocks of conv+ReLU layers,
    -> 128; 20 convolutions with the defaults (2.21 M parameters, ``receptive_radius`` 20).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: feature channels.
        features: hidden channels.
        num_blocks: residual blocks.
        convs_per_block: conv+ReLU layers per block.
        kernel_size: convolution kernel size.
        broadcast_input_residual: add the input image to every output channel (a 1-channel input is broadcast over
            all ``out_channels``). The ArSSR reference code does this; it is kept only for parity with checkpoints
            trained that way (methods note section 7.8) and is off by default.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 128,
        features: int = 64,
        num_blocks: int = 3,
        convs_per_block: int = 6,
        kernel_size: int = 3,
        broadcast_input_residual: bool = False,
    ) -> None:
        super().__init__()
        sd = _check_dims(spatial_dims)
        if broadcast_input_residual and in_channels not in (1, out_channels):
            raise ValueError(
                f"broadcast_input_residual needs in_channels 1 or {out_channels} (out_channels), got {in_channels}."
            )
        self.spatial_dims = sd
        self.head = nn.Sequential(conv_nd(sd, in_channels, features, kernel_size), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(
            *[
                ResidualBlock(sd, features, convs_per_block, kernel_size, last_activation=True)
                for _ in range(num_blocks)
            ]
        )
        self.tail = conv_nd(sd, features, out_channels, kernel_size)
        self.broadcast_input_residual = bool(broadcast_input_residual)
        self.out_channels = int(out_channels)
        self.receptive_radius = (2 + num_blocks * convs_per_block) * (kernel_size // 2)
        self.workspace_channels = max(4 * features, features + 2 * out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.tail(self.blocks(self.head(x)))
        if self.broadcast_input_residual:
            y = y + x
        return y


class SRResNet(nn.Module):
    """SRResNet (Ledig et al. 2017) without batch norm and without the upsampling tail, as an ArSSR encoder (Table V):
    head 1 -> 64, 18 residual blocks (conv-ReLU-conv + skip), a 64 -> 64 convolution with a global skip to the head,
    and a last convolution -> 128 (4.32 M parameters, ``receptive_radius`` 39 with the defaults). The head uses the
    same ``kernel_size`` as the body and ReLU activations (the original's 9x9 head and PReLU are not used in ArSSR's
    3D variant).

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: feature channels.
        features: hidden channels.
        num_blocks: residual blocks.
        kernel_size: convolution kernel size.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 128,
        features: int = 64,
        num_blocks: int = 18,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        sd = _check_dims(spatial_dims)
        self.spatial_dims = sd
        self.head = nn.Sequential(conv_nd(sd, in_channels, features, kernel_size), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(
            *[ResidualBlock(sd, features, 2, kernel_size, last_activation=False) for _ in range(num_blocks)]
        )
        self.body_conv = conv_nd(sd, features, features, kernel_size)
        self.tail = conv_nd(sd, features, out_channels, kernel_size)
        self.out_channels = int(out_channels)
        self.receptive_radius = (3 + 2 * num_blocks) * (kernel_size // 2)
        self.workspace_channels = max(5 * features, 2 * features + out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        return self.tail(self.body_conv(self.blocks(h)) + h)


ENCODERS: dict[str, type[nn.Module]] = {"rdn": RDN, "rescnn": ResCNN, "srresnet": SRResNet}
"""Encoder registry, keyed by lower-case name."""


def get_encoder(name: str, **kwargs: Any) -> nn.Module:
    """Build an encoder by name, case-insensitively (``"RDN"``, ``"rdn"``, ``"ResCNN"``, ``"SRResNet"``, ...).

    Args:
        name: encoder name; ``-`` and ``_`` are ignored (``"SR-ResNet"`` works).
        kwargs: constructor arguments of the encoder class.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in ENCODERS:
        valid = ", ".join(cls.__name__ for cls in ENCODERS.values())
        raise ValueError(f"Unknown encoder {name!r}; valid names (case-insensitive) are: {valid}.")
    return ENCODERS[key](**kwargs)


__all__ += ["build_encoder"]


def build_encoder(encoder: str | nn.Module, encoder_kwargs: dict[str, Any] | None = None, **defaults: Any) -> nn.Module:
    """The encoder of a network: a given module as it is (then ``encoder_kwargs`` must be empty), or
    :func:`get_encoder` of the name with ``defaults`` (the network's, e.g. ``spatial_dims``, ``in_channels``) updated
    by the user's ``encoder_kwargs``."""
    if isinstance(encoder, nn.Module):
        if encoder_kwargs:
            raise ValueError("encoder_kwargs can only be used with an encoder name, not an encoder module.")
        return encoder
    return get_encoder(encoder, **{**defaults, **(encoder_kwargs or {})})


# ---------------------------------------------------------------------------------------------------------------------
# EDSR-baseline (2D/3D), the LIIF / ArRFR encoder.
# ---------------------------------------------------------------------------------------------------------------------

__all__ += ["EDSR"]


class EDSR(nn.Module):
    """EDSR-baseline without the upsampling module (Lim et al., "Enhanced Deep Residual Networks for Single Image
    Super-Resolution", CVPR workshops 2017, section 3.2 and Fig. 3), 2D or 3D.

    Layout: a ``kernel_size`` head convolution (in -> ``features``), ``num_blocks`` residual blocks without batch
    normalisation (conv-ReLU-conv, the branch scaled by ``res_scale``, identity skip), a body convolution, the global
    residual to the head output, and optionally a last convolution to ``out_channels``.

    * LIIF (Chen et al., CVPR 2021) and the ArRFR paper (Yang 2025, section 3.2.3) use it with ``no_upsampling``: the
      ``features``-channel map after the global residual is the latent grid (``out_channels=None``, the default).
    * EDSR-baseline: 16 blocks, 64 features, ``res_scale`` 1. ArRFR: 128 features ("128-channel feature maps with the
      same height and width as input images"), 16 blocks, one encoder per modality, 1 input channel.
    * The RGB mean shift of the natural-image EDSR is not used (MR magnitudes normalised to [0, 1]).

    With ArRFR's sizes (2D, 1 -> 128, 16 blocks): 4.87 M parameters, ``receptive_radius`` 34.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        features: channels of the residual body (``n_feats``).
        num_blocks: residual blocks (``n_resblocks``).
        out_channels: channels of an extra last convolution, or ``None`` for the body output (``features`` channels).
        kernel_size: convolution kernel size.
        res_scale: residual scaling of each block (1 in EDSR-baseline; 0.1 in the large EDSR).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        features: int = 64,
        num_blocks: int = 16,
        out_channels: int | None = None,
        kernel_size: int = 3,
        res_scale: float = 1.0,
    ) -> None:
        super().__init__()
        sd = _check_dims(spatial_dims)
        if num_blocks < 0 or features < 1:
            raise ValueError(f"num_blocks must be >= 0 and features >= 1, got {num_blocks} and {features}.")
        self.spatial_dims = sd
        self.head = conv_nd(sd, in_channels, features, kernel_size)
        self.blocks = nn.Sequential(
            *[ResidualBlock(sd, features, 2, kernel_size, last_activation=False, res_scale=res_scale)
              for _ in range(num_blocks)]
        )
        self.body_conv = conv_nd(sd, features, features, kernel_size)
        self.tail = conv_nd(sd, features, out_channels, kernel_size) if out_channels is not None else None
        self.out_channels = int(out_channels) if out_channels is not None else int(features)
        r = kernel_size // 2
        self.receptive_radius = (2 + 2 * num_blocks + (1 if out_channels is not None else 0)) * r
        # head output (global skip), the block input, its hidden activation and the sum
        self.workspace_channels = 4 * features + (self.out_channels if out_channels is not None else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        y = self.body_conv(self.blocks(h)) + h
        return self.tail(y) if self.tail is not None else y


ENCODERS["edsr"] = EDSR
