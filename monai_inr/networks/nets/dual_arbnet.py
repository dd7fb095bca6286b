"""Dual-ArbNet: arbitrary-scale multi-contrast 2D MRI super-resolution with a reference of arbitrary resolution.

J. Zhang, Y. Chi, J. Lyu, W. Yang, Y. Tian, "Dual Arbitrary Scale Super-Resolution for Multi-contrast MRI", MICCAI 2023
(LNCS 14229, pp. 282-292; https://doi.org/10.1007/978-3-031-43999-5_27).

A shared RDN encoder maps the LR target and the reference (any resolution) to 64-channel feature maps; both are
3x3-unfolded and nearest-upsampled to the target HR grid by their own factors ``S_tar`` and ``S_ref`` (eq. 1); the
implicit fusion decoder (:class:`~monai_inr.networks.dual_arbnet_blocks.ImplicitFusionDecoder`, eqs. 2-4) fuses them
with channel/spatial attention and decodes every HR pixel with a sine IDF fed ``(1/S_tar, 1/S_ref, P)``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn as nn

from monai_inr import coords
from monai_inr.networks.dual_arbnet_blocks import ImplicitFusionDecoder
from monai_inr.networks.encoders import build_encoder
from monai_inr.networks.export import ScriptableDualArbNet, refuse_trace

__all__ = ["DualArbNet", "nearest_indices", "relative_coordinates"]

#: the paper's encoder: RDN configuration C without the upsampler (5 blocks x 10 layers, growth 64, 64 features)
PAPER_ENCODER = {"num_blocks": 5, "num_layers": 10, "growth": 64, "features": 64, "out_channels": None}


def nearest_indices(n_in: int, n_out: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Index of the nearest input cell for each of ``n_out`` cell-centred output cells over the same FOV.

    ``floor((i + 1/2) n_in / n_out)`` in exact integer arithmetic (``nearest-exact``; the cell whose extent contains the
    output cell centre, the lower index at a tie). Shape ``(n_out,)``, int64.
    """
    i = torch.arange(n_out, device=device, dtype=torch.int64)
    return torch.clamp(((2 * i + 1) * n_in) // (2 * n_out), max=n_in - 1)


def relative_coordinates(n_in: int, n_out: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Offset of each output cell centre from its nearest input cell centre, times ``n_in`` (LIIF's convention,
    in [-1, 1]): ``((2i+1)/n_out - (2 idx+1)/n_in) * n_in`` in normalised units. Shape ``(n_out,)``."""
    i = torch.arange(n_out, device=device, dtype=torch.float64)
    idx = nearest_indices(n_in, n_out, device).to(torch.float64)
    rel = (coords.voxel_to_normalized(i, (n_out,)) - coords.voxel_to_normalized(idx, (n_in,))) * n_in
    return rel.to(dtype)


def _as_batch_values(value: Any, b: int, device, name: str) -> torch.Tensor:
    t = torch.as_tensor(value, dtype=torch.float32, device=device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(b)
    if t.numel() != b:
        raise ValueError(f"{name} must be one number or one per batch item ({b}), got {t.numel()} values.")
    if not bool(torch.all(torch.isfinite(t) & (t > 0))):
        raise ValueError(f"{name} must be positive and finite, got {t.tolist()}.")
    return t


class DualArbNet(nn.Module):
    """Dual-ArbNet (Zhang et al., MICCAI 2023): target LR + reference (any resolution) -> target SR at any scale.

    Args:
        in_channels: image channels (1 magnitude; 2 complex as real/imaginary, the paper's data).
        out_channels: output channels (default ``in_channels``).
        encoder: encoder name for :func:`~monai_inr.networks.encoders.get_encoder` (``"RDN"``) or a 2D module
            ``(B, in_channels, h, w) -> (B, C, h, w)`` with an ``out_channels`` attribute.
        encoder_kwargs: encoder arguments; defaults are the paper's (:data:`PAPER_ENCODER`: 5 RDBs x 10 layers,
            growth 64, 64 features, no last convolution), given values override them.
        hidden: IDF width (64); the fusion branch has twice that with a reference.
        fusion_layers: fusion layers / modulated IDF layers (5).
        fusion_convs, kernel_size, reduction, spatial_kernel, skip_hidden, unfold, use_scale, use_coord, omega: see
            :class:`~monai_inr.networks.dual_arbnet_blocks.ImplicitFusionDecoder`.
        use_reference: ``False`` builds the single-contrast ablation ("w/o ref", Table 2): the reference input is
            ignored and the fusion branch sees the target only.
        detach_reference: encode the reference without gradient (the public code's ``no_grad``; saves memory);
            ``False`` (paper: a shared encoder, nothing said about gradients) trains the encoder through both inputs.

    Shapes (2D, batch first):
        ``forward(image (B, C, h, w), reference (B, C, h_r, w_r), output_shape=(H, W))`` -> ``(B, out, H, W)`` on the
        cell-centred grid covering the target's field of view. Without ``output_shape`` it is ``round(h * scale)``,
        ``round(w * scale)``. ``ref_coord`` ``(B or 1, H, W, 2)`` gives, for each output pixel, its normalised (i, j)
        position in the reference's frame (another FOV or orientation; see :mod:`monai_inr.inferers.slicewise`);
        without it the reference is assumed to cover exactly the target's FOV. ``S_tar`` is
        ``sqrt(H W / (h w))``; ``S_ref`` is ``ref_scale`` or ``sqrt(H W / (h_r w_r))``. Without a reference (and
        ``use_reference=True``) the target itself is used as an LR reference, so that shape checks and TorchScript
        export work with a single input.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        encoder: str | nn.Module = "RDN",
        encoder_kwargs: dict[str, Any] | None = None,
        hidden: int = 64,
        fusion_layers: int = 5,
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
        detach_reference: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module) and (encoder_kwargs or {}).get("spatial_dims", 2) != 2:
            raise ValueError("Dual-ArbNet is a 2D network: the encoder needs spatial_dims=2.")
        self.encoder = build_encoder(encoder, encoder_kwargs, spatial_dims=2, in_channels=in_channels, **PAPER_ENCODER)
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels if out_channels is not None else in_channels)
        self.feature_channels = int(getattr(self.encoder, "out_channels"))
        self.use_reference = bool(use_reference)
        self.detach_reference = bool(detach_reference)
        self.decoder = ImplicitFusionDecoder(
            feature_channels=self.feature_channels,
            out_channels=self.out_channels,
            hidden=hidden,
            num_layers=fusion_layers,
            fusion_convs=fusion_convs,
            kernel_size=kernel_size,
            reduction=reduction,
            spatial_kernel=spatial_kernel,
            skip_hidden=skip_hidden,
            unfold=unfold,
            use_reference=use_reference,
            use_scale=use_scale,
            use_coord=use_coord,
            omega=omega,
        )

    def __prepare_scriptable__(self) -> nn.Module:
        """What ``torch.jit.script`` compiles: :class:`~monai_inr.networks.export.ScriptableDualArbNet` (same
        parameters; same-FOV reference; the same outputs at any input size and scale)."""
        return ScriptableDualArbNet(self)

    # ------------------------------------------------------------------------------------------------------ info
    @property
    def receptive_radius(self) -> int:
        """LR pixels of context per side of one encoder feature (the encoder's receptive radius)."""
        return int(getattr(self.encoder, "receptive_radius", 0))

    @property
    def encode_workspace_channels(self) -> int:
        """Estimated peak activation values per LR pixel while encoding (memory planning)."""
        enc = int(getattr(self.encoder, "workspace_channels", 8 * self.feature_channels))
        return enc + 2 * self.decoder.fusion_channels

    @property
    def decode_workspace_channels(self) -> int:
        """Estimated peak values per HR pixel while decoding (memory planning)."""
        return self.decoder.hr_workspace_channels()

    # --------------------------------------------------------------------------------------------------- encoding
    def encode(self, image: torch.Tensor, reference: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The LR-side maps: ``{"proj_t", "skip_t"[, "proj_r", "skip_r"]}`` on the target / reference grids."""
        if image.ndim != 4:
            raise ValueError(f"Dual-ArbNet expects (B, C, H, W) images, got shape {tuple(image.shape)}.")
        if image.shape[1] != self.in_channels:
            raise ValueError(f"the target has {image.shape[1]} channels, the network expects {self.in_channels}.")
        feat_t = self.encoder(image)
        out = {"proj_t": self.decoder.fusion_projection(feat_t, "target"), "skip_t": self.decoder.skip(feat_t)}
        if self.use_reference:
            ref = image if reference is None else reference
            if ref.ndim != 4 or ref.shape[0] != image.shape[0]:
                raise ValueError(
                    f"the reference must be (B, C, H, W) with the target's batch size {image.shape[0]}, "
                    f"got shape {tuple(ref.shape)}."
                )
            if ref.shape[1] != image.shape[1]:
                raise ValueError(
                    f"the target has {image.shape[1]} channels but the reference has {ref.shape[1]}; both must be "
                    f"magnitude (1 channel) or both complex (2 channels)."
                )
            if self.detach_reference:
                with torch.no_grad():
                    feat_r = self.encoder(ref)
            else:
                feat_r = self.encoder(ref)
            out["proj_r"] = self.decoder.fusion_projection(feat_r, "reference")
            out["skip_r"] = self.decoder.skip(feat_r)
        return out

    # --------------------------------------------------------------------------------------------------- decoding
    @staticmethod
    def _gather_same_fov(x: torch.Tensor, out_shape: Sequence[int]) -> torch.Tensor:
        """Nearest up-sampling (eq. 1) of ``x`` ``(B, C, h, w)`` onto ``out_shape`` over the same FOV."""
        ih = nearest_indices(x.shape[-2], int(out_shape[0]), x.device)
        iw = nearest_indices(x.shape[-1], int(out_shape[1]), x.device)
        return x.index_select(-2, ih).index_select(-1, iw)

    @staticmethod
    def _gather_at(x: torch.Tensor, ref_coord: torch.Tensor) -> torch.Tensor:
        """Nearest lookup of ``x`` ``(B, C, h, w)`` at normalised (i, j) positions ``ref_coord`` ``(B|1, H, W, 2)``."""
        b, c, h, w = x.shape
        hh, ww = ref_coord.shape[1:3]
        v = coords.normalized_to_voxel(ref_coord.to(torch.float64), (h, w))
        idx = torch.floor(v + 0.5).long()
        ii = idx[..., 0].clamp(0, h - 1)
        jj = idx[..., 1].clamp(0, w - 1)
        flat = (ii * w + jj).reshape(ref_coord.shape[0], 1, hh * ww).expand(b, c, hh * ww)
        return x.reshape(b, c, h * w).gather(2, flat).reshape(b, c, hh, ww)

    def decode(
        self,
        encoded: dict[str, torch.Tensor],
        target_shape: Sequence[int],
        output_shape: Sequence[int],
        reference_shape: Sequence[int] | None = None,
        ref_coord: torch.Tensor | None = None,
        ref_scale: Any = None,
        return_reference: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The HR output from :meth:`encode`'s maps (see :meth:`forward` for the arguments)."""
        h, w = (int(v) for v in target_shape)
        out_shape = tuple(int(v) for v in output_shape)
        proj_t = encoded["proj_t"]
        b, device = proj_t.shape[0], proj_t.device
        fused0 = self._gather_same_fov(proj_t, out_shape)
        skip_t = self._gather_same_fov(encoded["skip_t"], out_shape)
        inv_t = torch.full((b,), math.sqrt(h * w / (out_shape[0] * out_shape[1])), device=device)
        inv_r = None
        skip_r = None
        if self.use_reference:
            rh, rw = (int(v) for v in (reference_shape or encoded["proj_r"].shape[-2:]))
            if ref_coord is None:
                fused0 = fused0 + self._gather_same_fov(encoded["proj_r"], out_shape)
                if return_reference:
                    skip_r = self._gather_same_fov(encoded["skip_r"], out_shape)
            else:
                if tuple(ref_coord.shape[1:]) != (*out_shape, 2):
                    raise ValueError(
                        f"ref_coord must be (B, {out_shape[0]}, {out_shape[1]}, 2), got {tuple(ref_coord.shape)}."
                    )
                fused0 = fused0 + self._gather_at(encoded["proj_r"], ref_coord.to(device))
                if return_reference:
                    skip_r = self._gather_at(encoded["skip_r"], ref_coord.to(device))
            if ref_scale is None:
                inv_r = torch.full((b,), math.sqrt(rh * rw / (out_shape[0] * out_shape[1])), device=device)
            else:
                inv_r = 1.0 / _as_batch_values(ref_scale, b, device, "ref_scale")
        rel = torch.stack(
            torch.broadcast_tensors(
                relative_coordinates(h, out_shape[0], device)[:, None],
                relative_coordinates(w, out_shape[1], device)[None, :],
            ),
            dim=0,
        )[None]
        code = self.decoder.coordinate_code(inv_t, inv_r, rel.to(fused0.dtype))
        out_t, out_r = self.decoder(fused0, code, skip_t, skip_r)
        if return_reference:
            if out_r is None:
                raise ValueError("return_reference needs a network with use_reference=True.")
            return out_t, out_r
        return out_t

    def forward(
        self,
        image: torch.Tensor,
        reference: torch.Tensor | None = None,
        output_shape: Sequence[int] | None = None,
        scale: float | Sequence[float] = 2.0,
        ref_coord: torch.Tensor | None = None,
        ref_scale: Any = None,
        return_reference: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Super-resolve the target.

        Args:
            image: target LR ``(B, C, h, w)``.
            reference: reference ``(B, C, h_r, w_r)`` at any resolution (``None``: the target itself, LR reference).
            output_shape: HR grid ``(H, W)`` over the target FOV; default ``round(h * scale), round(w * scale)``.
            scale: up-sampling factor when ``output_shape`` is not given (one number or one per axis).
            ref_coord: ``(B or 1, H, W, 2)`` normalised (i, j) positions of the HR pixel centres in the reference's
                frame, when the reference does not cover exactly the target FOV.
            ref_scale: ``S_ref``, the reference-to-HR up-sampling factor (one or ``(B,)``); default from the shapes.
            return_reference: also return the reference contrast decoded on the target HR grid (eq. 4, ``z = ref``).

        Returns:
            target SR ``(B, out, H, W)`` (and the reference SR when ``return_reference``).
        """
        refuse_trace("Dual-ArbNet")
        if output_shape is None:
            output_shape = coords.scaled_shape(tuple(int(s) for s in image.shape[2:]), scale)
        encoded = self.encode(image, reference if self.use_reference else None)
        ref_shape = None
        if self.use_reference:
            ref_shape = tuple((reference if reference is not None else image).shape[2:])
        return self.decode(
            encoded, image.shape[2:], output_shape, ref_shape, ref_coord, ref_scale, return_reference
        )
