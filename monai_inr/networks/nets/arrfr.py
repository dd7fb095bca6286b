"""ArRFR: self-supervised sodium + T2w fusion at arbitrary resolution with a local implicit image function.

K. Yang, "Sodium and T2W MRI Fusion Representation of Arbitrary Resolution via Implicit Neural Representation", 2025
(section 3, Fig. 1).

Two EDSR-baseline encoders (one per modality, 128 channels each, no upsampling) turn an aligned pair of sodium and
T2-weighted slices into feature maps that are concatenated (256 channels) and re-weighted by CBAM (channel attention
with a shared MLP over average- and max-pooled descriptors, then 7x7 spatial attention; eqs. 1-2). A LIIF local
implicit function (3x3 feature unfolding, relative coordinate and cell inputs, local ensemble over the four nearest
latent codes; a 5-layer ReLU MLP of width 128) maps every output pixel to one fused intensity, so one model serves
every output resolution (also non-integer scales and non-square slices).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from monai_inr import coords
from monai_inr.errors import InputError
from monai_inr.networks.blocks import CBAM
from monai_inr.networks.decoders import LIIFDecoder, output_query_grid
from monai_inr.networks.encoders import get_encoder
from monai_inr.networks.export import ScriptableArRFR, refuse_trace

__all__ = ["ArRFR", "output_query_grid"]  # output_query_grid: re-exported from decoders


class ArRFR(nn.Module):
    """ArRFR network (Yang 2025): sodium + T2w -> fused image on any output grid over the same field of view.

    Args:
        in_channels: channels of each modality (1: magnitude, as the paper).
        out_channels: fused output channels.
        encoder: encoder name for :func:`~monai_inr.networks.encoders.get_encoder` (``"EDSR"``, the paper) used for
            both modalities (two encoders, no shared weights).
        feature_channels: channels of each encoder's map (128); the fused map has twice that.
        encoder_kwargs: extra encoder arguments (e.g. ``{"num_blocks": 16}``; EDSR defaults: 16 blocks).
        attention_reduction: CBAM channel-MLP reduction (256 -> 16 -> 256 in the paper's code).
        attention_kernel: CBAM spatial-attention kernel (7, eq. 2).
        use_attention: CBAM on the concatenated features (``False``: plain concatenation, an ablation).
        decoder_hidden: MLP width (128).
        decoder_layers: linear layers of the MLP (5 in the paper and in the public code, whose ``hidden_list
            [128] * 4`` gives four hidden layers, i.e. five linear layers).
        feat_unfold, local_ensemble, cell_decode: LIIF options (all on in the paper).
        output_activation: decoder output activation (``None``: linear; the paper does not clamp).
        chunk_size: queries per decoder call on the whole-grid path.
        default_scale: up-sampling factor of :meth:`forward` when neither ``output_shape`` nor ``scale`` is given
            (used by ``verify_net_in_out`` and TorchScript export).

    Protocols:
        * slice-wise inference (:class:`monai_inr.inferers.SliceWiseInferer`): ``forward(sodium (n, C, h, w),
          t2w (n, C, h, w), output_shape=(H, W))`` -> ``(n, out, H, W)``; the two inputs must share the grid (the
          ``ref_coord`` of an unaligned reference is refused);
        * a single tensor with ``2 * in_channels`` channels (sodium first, then T2w) is split into the two inputs
          (``verify_net_in_out``, TorchScript);
        * training: ``forward(sodium_lr, t2w_lr, coord=(B, K, 2), cell=(B, K, 2))`` -> ``(B, K, out)`` at arbitrary
          query points of the LR frame;
        * encode once, query in chunks: :meth:`encode` -> latent grid, :meth:`decode` (latent, coord, cell).
    """

    use_reference = True

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        encoder: str = "EDSR",
        feature_channels: int = 128,
        encoder_kwargs: dict[str, Any] | None = None,
        attention_reduction: int = 16,
        attention_kernel: int = 7,
        use_attention: bool = True,
        decoder_hidden: int = 128,
        decoder_layers: int = 5,
        feat_unfold: bool = True,
        local_ensemble: bool = True,
        cell_decode: bool = True,
        output_activation: str | tuple | None = None,
        chunk_size: int = 65536,
        default_scale: float = 2.0,
    ) -> None:
        super().__init__()
        kwargs: dict[str, Any] = {"spatial_dims": 2, "in_channels": in_channels}
        if str(encoder).lower().replace("-", "").replace("_", "") == "edsr":
            kwargs["features"] = feature_channels
        else:
            kwargs["out_channels"] = feature_channels
        kwargs.update(encoder_kwargs or {})
        self.encoder_sodium = get_encoder(encoder, **kwargs)
        self.encoder_t2w = get_encoder(encoder, **kwargs)
        enc_out = int(getattr(self.encoder_sodium, "out_channels", feature_channels))
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.feature_channels = enc_out
        fused = 2 * enc_out
        self.attention = CBAM(2, fused, attention_reduction, attention_kernel) if use_attention else nn.Identity()
        self.decoder = LIIFDecoder(
            fused, out_channels, decoder_hidden, decoder_layers, 2, feat_unfold, local_ensemble, cell_decode,
            output_activation,
        )
        self.chunk_size = int(chunk_size)
        self.default_scale = float(default_scale)

    def __prepare_scriptable__(self) -> nn.Module:
        """What ``torch.jit.script`` compiles: :class:`~monai_inr.networks.export.ScriptableArRFR` (same parameters,
        the same outputs at any input size and scale)."""
        return ScriptableArRFR(self)

    # ------------------------------------------------------------------------------------------------ properties
    @property
    def receptive_radius(self) -> int:
        """LR pixels of context per side behind one latent value (encoder + 7x7 spatial attention + 3x3 unfolding).
        The channel attention pools over the whole slice, so tiles are *not* exact: ArRFR is run slice by slice."""
        return int(getattr(self.encoder_sodium, "receptive_radius", 0)) + 3 + 1

    @property
    def decode_workspace_channels(self) -> int:
        """Estimated peak values alive per output pixel while decoding (memory planning of the slice-wise inferer)."""
        return int(self.decoder.workspace_channels) + 8

    # ------------------------------------------------------------------------------------------------ parts
    def _split(self, image: torch.Tensor, reference: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if reference is None:
            if image.shape[1] != 2 * self.in_channels:
                raise InputError(
                    f"ArRFR needs a sodium and a T2w image: pass the T2w as the reference, or one tensor with "
                    f"{2 * self.in_channels} channels (sodium first), got {image.shape[1]} channel(s)."
                )
            return image[:, : self.in_channels], image[:, self.in_channels :]
        if image.shape[1] != self.in_channels or reference.shape[1] != self.in_channels:
            raise InputError(
                f"ArRFR expects {self.in_channels}-channel sodium and T2w magnitude images, got {image.shape[1]} and "
                f"{reference.shape[1]} channel(s) (complex sodium must be converted to its magnitude first)."
            )
        if tuple(image.shape[2:]) != tuple(reference.shape[2:]) or image.shape[0] != reference.shape[0]:
            raise InputError(
                f"the sodium {tuple(image.shape)} and T2w {tuple(reference.shape)} slices have different shapes; "
                f"register and resample the T2w onto the sodium grid first."
            )
        return image, reference

    def fuse(self, sodium: torch.Tensor, t2w: torch.Tensor) -> torch.Tensor:
        """CBAM-fused feature map ``(B, 2 * feature_channels, h, w)`` (section 3.2.2)."""
        features = torch.cat([self.encoder_sodium(sodium), self.encoder_t2w(t2w)], dim=1)
        return self.attention(features)

    def encode(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """Latent grid ``(B, decoder_hidden, h, w)``: the fused map with the decoder's (exactly factorised) first
        layer applied on the LR grid (:meth:`~monai_inr.networks.decoders.LIIFDecoder.project`); float32."""
        sodium, t2w = self._split(image, reference)
        return self.decoder.project(self.fuse(sodium, t2w)).float()

    def decode(self, latent: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor | None = None) -> torch.Tensor:
        """Fused intensities ``(B, K, out_channels)`` at normalised LR-frame coordinates ``coord`` ``(B, K, 2)``."""
        return self.decoder.query(latent, coord, cell)

    # ------------------------------------------------------------------------------------------------ forward
    def forward(
        self,
        image: torch.Tensor,
        reference: torch.Tensor | None = None,
        output_shape: Sequence[int] | None = None,
        scale: float | Sequence[float] | None = None,
        coord: torch.Tensor | None = None,
        cell: torch.Tensor | None = None,
        ref_coord: torch.Tensor | None = None,
        ref_scale: float | None = None,
    ) -> torch.Tensor:
        """See the class docstring; ``ref_scale`` (from the slice-wise inferer) is ignored: both inputs share a grid."""
        if ref_coord is not None:
            raise InputError(
                "the T2w does not lie on the sodium grid (different field of view or unaligned affines); register "
                "and resample the T2w onto the sodium grid first."
            )
        latent = self.encode(image, reference)
        if coord is not None:
            if cell is None and self.decoder.cell_decode:
                raise ValueError("pass cell (B, K, 2) together with coord.")
            return self.decode(latent, coord, cell)
        refuse_trace("ArRFR")
        in_shape = tuple(int(s) for s in latent.shape[2:])
        if output_shape is None:
            output_shape = coords.scaled_shape(in_shape, self.default_scale if scale is None else scale)
        return self.decoder.decode_grid(latent, output_shape, self.chunk_size)
