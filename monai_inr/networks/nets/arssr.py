"""ArSSR: arbitrary-scale 3D single-image super-resolution with an implicit voxel function.

Q. Wu, Y. Li, Y. Sun, Y. Zhou, H. Wei, J. Yu, Y. Zhang, "An Arbitrary Scale Super-Resolution Approach for 3D MR Images
via Implicit Neural Representation", IEEE JBHI 27(2):1004-1015, 2023.

A convolutional encoder maps the LR volume to a 128-channel feature grid at LR resolution; for any query at normalised
coordinate x the feature grid is trilinearly interpolated at x and the decoder MLP maps [feature, x] (131 values) to
the intensity. One trained model serves every scale.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn as nn

from monai.networks.layers.utils import get_act_layer

from monai_inr import coords
from monai_inr.networks.decoders import ArSSRDecoder
from monai_inr.networks.encoders import build_encoder
from monai_inr.networks.export import ScriptableArSSR, refuse_trace

__all__ = ["ArSSR"]

#: truncation radius of the cubic skip's B-spline prefilter (relative error 7e-6; :func:`coords.cubic_bspline_prefilter`)
PREFILTER_RADIUS = 8


def _skip_mode(input_skip: bool | str) -> str:
    if isinstance(input_skip, str):
        mode = input_skip.strip().lower()
        mode = {"true": "linear", "trilinear": "linear", "false": "none", "bicubic": "cubic"}.get(mode, mode)
        if mode not in ("none", "linear", "cubic"):
            raise ValueError(f"input_skip must be false, true/'linear' or 'cubic', got {input_skip!r}.")
        return mode
    return "linear" if input_skip else "none"


class ArSSR(nn.Module):
    """ArSSR network: encoder + trilinear feature lookup + :class:`~monai_inr.networks.decoders.ArSSRDecoder`.

    Implements the implicit-network protocol of :class:`monai_inr.inferers.ImplicitInferer` (``encode`` /
    ``decode`` / ``receptive_radius``), so whole volumes are super-resolved by encoding once and querying in chunks.

    Args:
        encoder: encoder name for :func:`~monai_inr.networks.encoders.get_encoder` (case-insensitive: ``"RDN"``
            (paper), ``"ResCNN"``, ``"SRResNet"``), or an ``nn.Module`` mapping ``(B, in_channels, D, H, W)`` to
            ``(B, feature_channels, D, H, W)``.
        in_channels: image channels.
        feature_channels: channels of the latent feature grid (128 in the paper).
        decoder_hidden: width of the decoder MLP (256 in the paper).
        out_channels: output intensities per query.
        encoder_kwargs: extra constructor arguments of the encoder (e.g. ``{"num_blocks": 4}``).
        output_activation: decoder output activation, ``"relu"`` as in the paper or ``None`` for z-scored data.
        input_skip: add an interpolation of the input image at each query to the decoder output (global residual
            learning as in VDSR, Kim et al., CVPR 2016), so the network learns only the detail that interpolation
            misses: ``"linear"`` (or ``True``) trilinear, ``"cubic"`` cubic B-spline (the cubic baseline's
            interpolant: :func:`~monai_inr.coords.cubic_bspline_prefilter` at encoding,
            :func:`~monai_inr.coords.sample_cubic_bspline` at decoding). Off in the paper (``False``, the default);
            the CPU training profile turns it on because it converges within a CPU budget. The image (or its spline
            coefficients) rides along as ``in_channels`` extra channels of the feature grid, so it is tiled with it.

    Shapes:
        * ``encode(image)``: ``(B, in_channels, D, H, W)`` -> features ``(B, feature_channels, D, H, W)`` (float32).
        * ``decode(features, coord)``: ``coord`` ``(B, K, 3)`` cell-centred normalised (i, j, k) -> ``(B, K, out)``.
        * ``forward(image, coord)`` -> ``(B, K, out)`` (training); ``forward(image, scale=s)`` ->
          ``(B, out, *round(N * s))`` on the cell-centred grid covering the input field of view.
    """

    def __init__(
        self,
        encoder: str | nn.Module = "RDN",
        in_channels: int = 1,
        feature_channels: int = 128,
        decoder_hidden: int = 256,
        out_channels: int = 1,
        encoder_kwargs: dict[str, Any] | None = None,
        output_activation: str | tuple | None = "relu",
        input_skip: bool | str = False,
    ) -> None:
        super().__init__()
        self.encoder = build_encoder(encoder, encoder_kwargs, spatial_dims=3, in_channels=in_channels,
                                     out_channels=feature_channels)
        self.in_channels = int(in_channels)
        self.feature_channels = int(feature_channels)
        self.out_channels = int(out_channels)
        self.skip_mode = _skip_mode(input_skip)
        self.input_skip = self.skip_mode != "none"
        self.prefilter_radius = PREFILTER_RADIUS
        self._config = None if isinstance(encoder, nn.Module) else {
            "_target_": f"{__name__.rsplit('.', 1)[0]}.ArSSR",
            "encoder": str(encoder),
            "in_channels": int(in_channels),
            "feature_channels": int(feature_channels),
            "decoder_hidden": int(decoder_hidden),
            "out_channels": int(out_channels),
            "encoder_kwargs": dict(encoder_kwargs or {}),
            "output_activation": output_activation,
            "input_skip": input_skip if isinstance(input_skip, str) else bool(input_skip),
        }
        if self.input_skip and out_channels != in_channels:
            raise ValueError(
                f"input_skip needs out_channels == in_channels (the skip adds the interpolated input), got "
                f"{out_channels} and {in_channels}."
            )
        # with the skip, the activation applies to the sum (interpolated input + decoded detail)
        self.decoder = ArSSRDecoder(
            feature_channels + 3, decoder_hidden, out_channels, None if self.input_skip else output_activation
        )
        act = output_activation.lower() if isinstance(output_activation, str) else output_activation
        self.output_activation = (
            get_act_layer(act) if self.input_skip and act not in (None, "none", "identity", "linear") else None
        )

    def __prepare_scriptable__(self) -> nn.Module:
        """What ``torch.jit.script`` compiles: :class:`~monai_inr.networks.export.ScriptableArSSR` (same parameters,
        the same outputs at any input size and scale)."""
        return ScriptableArSSR(self)

    @property
    def config(self) -> dict | None:
        """The bundle-config definition that rebuilds this network (``None`` with an encoder module), stored in
        shipped checkpoints (:func:`monai_inr.engines.checks.save_network_checkpoint`)."""
        return None if self._config is None else dict(self._config, encoder_kwargs=dict(self._config["encoder_kwargs"]))

    @property
    def receptive_radius(self) -> int:
        """Voxels of LR context per side that determine one feature vector exactly (from the encoder; with the cubic
        skip at least the prefilter's radius plus the spline's two taps)."""
        radius = int(getattr(self.encoder, "receptive_radius"))
        return max(radius, self.prefilter_radius + 2) if self.skip_mode == "cubic" else radius

    @property
    def encode_workspace_channels(self) -> int:
        """Estimated peak activation values per LR voxel while encoding (for memory planning)."""
        return int(getattr(self.encoder, "workspace_channels", 8 * self.feature_channels))

    @property
    def decode_workspace_channels(self) -> int:
        """Estimated peak values per query while decoding (for memory planning)."""
        return int(self.decoder.workspace_channels) + self.feature_channels + self.skip_channels

    @property
    def skip_channels(self) -> int:
        """Channels of the input image carried in the feature grid for :attr:`input_skip` (0 without the skip)."""
        return self.in_channels if self.input_skip else 0

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Feature grid ``(B, feature_channels + skip_channels, *spatial)`` of an image ``(B, in_channels, *spatial)``.

        Always float32 (also under bf16 autocast) so that the trilinear lookup uses full-precision coordinates. With
        :attr:`input_skip`, the image itself (``"linear"``) or its cubic B-spline coefficients (``"cubic"``) follow
        the features as the last ``in_channels`` channels.
        """
        features = self.encoder(image).float()
        if self.skip_mode == "linear":
            features = torch.cat([features, image.float()], dim=1)
        elif self.skip_mode == "cubic":
            features = torch.cat([features, coords.cubic_bspline_prefilter(image, self.prefilter_radius)], dim=1)
        return features

    def decode(
        self, features: torch.Tensor, coord: torch.Tensor, lookup_coord: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Intensities at normalised coordinates.

        Args:
            features: ``(B, C, D, H, W)`` feature grid from :meth:`encode`.
            coord: ``(B, K, 3)`` absolute normalised (i, j, k) query coordinates in the frame of the whole input
                field of view; they are the decoder's coordinate input.
            lookup_coord: where to interpolate ``features``, in the frame of ``features`` itself. Defaults to
                ``coord``; differs only when ``features`` covers a tile of the volume (tiled inference).

        Returns:
            ``(B, K, out_channels)``.
        """
        where = coord if lookup_coord is None else lookup_coord
        feat = coords.sample_features(features, where, mode="bilinear", padding_mode="border")
        dtype = feat.dtype
        if torch.is_autocast_enabled(feat.device.type):  # build the decoder input once in the compute dtype
            dtype = torch.get_autocast_dtype(feat.device.type)
        c = self.feature_channels
        x = torch.empty((*feat.shape[:-1], c + coord.shape[-1]), dtype=dtype, device=feat.device)
        x[..., :c] = feat[..., :c]
        x[..., c:] = coord
        out = self.decoder(x)
        if not self.input_skip:
            return out
        skip = feat[..., c:] if self.skip_mode == "linear" else coords.sample_cubic_bspline(features[:, c:], where)
        out = out.float() + skip
        return out if self.output_activation is None else self.output_activation(out)

    def forward(
        self,
        image: torch.Tensor,
        coord: torch.Tensor | None = None,
        scale: float | Sequence[float] = 2.0,
        chunk_size: int = 65536,
    ) -> torch.Tensor:
        """Training path with ``coord`` ``(B, K, 3)`` -> ``(B, K, out)``; without ``coord``, the whole super-resolved
        volume ``(B, out, *round(N * scale))`` on the cell-centred grid (used by ``verify_net_in_out`` and TorchScript
        export; large volumes should go through :class:`~monai_inr.inferers.ImplicitInferer`)."""
        if coord is None:
            refuse_trace("ArSSR")
        features = self.encode(image)
        if coord is not None:
            return self.decode(features, coord)
        out_shape = coords.scaled_shape(tuple(int(s) for s in image.shape[2:]), scale)
        grid = coords.normalized_grid(out_shape, device=image.device, dtype=features.dtype)
        b = image.shape[0]
        n = grid.shape[0]
        parts = []
        for start in range(0, n, chunk_size):
            q = grid[start : start + chunk_size].unsqueeze(0).expand(b, -1, -1)
            parts.append(self.decode(features, q))
        values = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return values.transpose(1, 2).reshape(b, self.out_channels, *out_shape)
