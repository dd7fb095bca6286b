"""LIIF: single-image arbitrary-scale super-resolution with a local implicit image function (2D).

Y. Chen, S. Liu, X. Wang, "Learning Continuous Image Representation with Local Implicit Image Function", CVPR 2021.
A convolutional encoder (EDSR-baseline or RDN, no upsampler) turns the LR image into a latent grid; an MLP maps each
output pixel's 3x3-unfolded latent code, its coordinate relative to the code and its cell size to an intensity, with
a local ensemble over the four nearest codes (:class:`~monai_inr.networks.decoders.LIIFDecoder`). One model serves
every output grid over the input's field of view.

Dual-ArbNet (Zhang et al., MICCAI 2023, Table 1) compares against LIIF as the single-contrast arbitrary-scale method;
in this project it is that comparison row: trained on the same k-space-truncated patches and evaluated on the same
slices as Dual-ArbNet, with the reference ignored (``use_reference = False``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from monai_inr import coords
from monai_inr.networks.decoders import LIIFDecoder
from monai_inr.networks.encoders import build_encoder
from monai_inr.networks.export import refuse_trace

__all__ = ["LIIF"]


class LIIF(nn.Module):
    """LIIF network (Chen et al. 2021), 2D: LR image -> image on any output grid over the same field of view.

    Args:
        in_channels: input channels (1 magnitude, 2 real/imaginary).
        out_channels: output channels (default ``in_channels``).
        encoder: encoder name for :func:`~monai_inr.networks.encoders.get_encoder` (``"EDSR"``: the paper's
            EDSR-baseline; ``"RDN"``: its RDN variant), or a 2D encoder module with an ``out_channels`` attribute.
        encoder_kwargs: encoder arguments (e.g. ``{"features": 64, "num_blocks": 16}``); ``spatial_dims`` and
            ``in_channels`` are set here.
        decoder_hidden: MLP width (256 in the paper).
        decoder_layers: linear layers of the MLP (5 in the paper: four hidden layers of 256).
        feat_unfold, local_ensemble, cell_decode: the paper's options (all on).
        chunk_size: queries per decoder call.
        default_scale: up-sampling factor when neither ``output_shape`` nor ``scale`` is given.

    Protocol (the slice-wise inferer and the reference-based training pipeline of Dual-ArbNet): ``forward(image
    (B, C, h, w), reference=None, output_shape=(H, W))`` -> ``(B, out, H, W)``; ``reference``, ``ref_coord`` and
    ``ref_scale`` are accepted and ignored, so the model drops in wherever a reference network runs.
    """

    use_reference = False

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        encoder: str | nn.Module = "EDSR",
        encoder_kwargs: dict[str, Any] | None = None,
        decoder_hidden: int = 256,
        decoder_layers: int = 5,
        feat_unfold: bool = True,
        local_ensemble: bool = True,
        cell_decode: bool = True,
        chunk_size: int = 65536,
        default_scale: float = 2.0,
    ) -> None:
        super().__init__()
        self.encoder = build_encoder(encoder, encoder_kwargs, spatial_dims=2, in_channels=in_channels)
        if not hasattr(self.encoder, "out_channels"):
            raise ValueError("the LIIF encoder needs an out_channels attribute (channels of its feature map).")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels if out_channels is not None else in_channels)
        self.feature_channels = int(self.encoder.out_channels)
        self.decoder = LIIFDecoder(
            self.feature_channels, self.out_channels, decoder_hidden, decoder_layers, 2, feat_unfold, local_ensemble,
            cell_decode,
        )
        self.chunk_size = int(chunk_size)
        self.default_scale = float(default_scale)

    @property
    def decode_workspace_channels(self) -> int:
        """Estimated peak values alive per output pixel while decoding (memory planning of the slice-wise inferer)."""
        return int(self.decoder.workspace_channels) + 8

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Latent grid: the encoder map with the decoder's first layer applied on the LR grid (exact factorisation,
        :meth:`~monai_inr.networks.decoders.LIIFDecoder.project`); float32."""
        return self.decoder.project(self.encoder(image)).float()

    def forward(
        self,
        image: torch.Tensor,
        reference: torch.Tensor | None = None,
        output_shape: Sequence[int] | None = None,
        scale: float | Sequence[float] | None = None,
        ref_coord: torch.Tensor | None = None,
        ref_scale: Any = None,
    ) -> torch.Tensor:
        """Super-resolve ``image`` onto ``output_shape`` (default ``round(h * scale), round(w * scale)``)."""
        refuse_trace("LIIF")
        if image.ndim != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"LIIF expects (B, {self.in_channels}, h, w) images, got {tuple(image.shape)}.")
        latent = self.encode(image)
        if output_shape is None:
            in_shape = tuple(int(s) for s in latent.shape[2:])
            output_shape = coords.scaled_shape(in_shape, self.default_scale if scale is None else scale)
        return self.decoder.decode_grid(latent, output_shape, self.chunk_size)
