"""Nexus-INR: diverse knowledge-guided arbitrary-scale multimodal MRI super-resolution.

B. Zhang, J. Huo, Z. Zhang, W. Wang, H. Gao, X. Gong, W. Wang, "Nexus-INR: Diverse Knowledge-guided Arbitrary-Scale
Multimodal Medical Image Super-Resolution", arXiv:2508.03073, 2025. No public code exists; this is a reimplementation
from the paper (section 3) with the open choices documented in ``bundles/nexus_inr/docs/README.md``.

Data flow for two modalities on different anisotropic grids (T1w thick along z, T2w thick along y):

1. per modality a shared-anatomy encoder and a modality-specific encoder (eq. 2-3; 3D RDN, 128 features);
2. every feature map trilinearly up-sampled to one high-resolution (HR) grid (eq. 4-5);
3. cross-modal attention: T2w shared features (query) attend to T1w shared features (key/value), eq. 6, here in
   local windows of the HR grid (:class:`WindowCrossAttention`): one block with non-overlapping windows, or
   (``shifted_windows``) blocks whose partitions alternate between plain and shifted by half a window (Swin-style);
4. at query points ``p``: trilinear samples of every HR map (eq. 7-8, 10, 13-14), residual fusion
   ``f_m = f_proj([z_m^shared, z_m^spec]) + z_m^shared`` (eq. 15-16);
5. segmentation heads ``z_m^seg = f_seg^m(f_m)`` whose logits are fused back, ``h_m = f_fusion^m([f_m, z_m^seg])``
   (eq. 20-23);
6. the implicit decoder (4 x 256 MLP, one per modality, linear output) maps ``[h_m, e_m]`` to the intensity, with
   ``e_m`` Fourier features of the target coordinate (eq. 17, 24-25): by default its normalised coordinate in the
   field of view of the whole volume (:class:`AbsoluteFourierEncoding`), optionally its position between the voxel
   centres of modality ``m``'s LR grid (:class:`SubVoxelFourierEncoding`).

Every module is switchable so the paper's ablation (Table 2) is a set of constructor flags: ``dual_branch``
(multi-modal fusion: shared + specific encoders, residual fusion and the CMFA/FDL terms), ``cross_attention``
(KD-Attn with L_KD and L_T2Self) and ``segmentation`` (SEL). With all three off each modality has one encoder and a
decoder: the ArSSR-like baseline.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from monai_inr import coords
from monai_inr.networks.encoders import get_encoder
from monai_inr.networks.export import ScriptableNexusINR
from monai_inr.networks.nexus_blocks import (
    POSITION_ENCODINGS,
    AbsoluteFourierEncoding,
    SubVoxelFourierEncoding,
    WindowCrossAttention,
    get_position_encoding,
)

__all__ = ["NexusINR", "WindowCrossAttention", "AbsoluteFourierEncoding", "SubVoxelFourierEncoding"]


def _mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of ``sizes`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _channel_layer_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Layer normalisation over the channels of a ``(B, C, *spatial)`` map at every voxel (no affine)."""
    return F.layer_norm(x.movedim(1, -1), (x.shape[1],), eps=eps).movedim(-1, 1)


class NexusINR(nn.Module):
    """Nexus-INR network (Zhang et al., arXiv:2508.03073, 2025, section 3) with every module switchable.

    Args:
        in_channels: channels of each modality's LR input (1).
        feature_channels: channels of every encoder output (paper: 128).
        encoder: encoder name for :func:`monai_inr.networks.encoders.get_encoder` (paper: RDN; Table 3 also SRResNet,
            ResCNN).
        encoder_kwargs: extra encoder arguments (e.g. a small RDN for CPU runs).
        dual_branch: multi-modal fusion (MMF): a shared and a modality-specific encoder per modality with residual
            fusion (eq. 15-16) and the CMFA/FDL auxiliary outputs; off: one encoder per modality, ``f_m = z_m``.
        cross_attention: KD-Attn: T2w shared features attend to T1w shared features (eq. 6) and the outputs of
            L_KD (eq. 9) and L_T2Self (eq. 11) are returned.
        segmentation: segmentation-enhanced learning (SEL): per-modality segmentation heads whose logits are fused
            back (eq. 20-23).
        share_encoder_weights: one shared-anatomy encoder used by both modalities instead of one per modality (the
            paper writes ``Encoder_m^shared``, i.e. one per modality: default ``False``).
        num_classes: segmentation classes (3: background, tumour core, oedema).
        attention_window, attention_heads: :class:`WindowCrossAttention` settings.
        shifted_windows: Swin-style shifted windows (Liu et al. 2021; the paper's attention is "voxel-wise", the
            windows are this implementation's choice): the attention blocks alternate between the plain partition
            and one shifted by ``attention_window // 2`` voxels, so a T2w voxel also attends to T1w voxels of the
            neighbouring windows. Off (default): non-overlapping windows, no exchange across them.
        attention_blocks: cross-attention blocks applied one after the other (each: T2w query, T1w key/value); the
            default ``None`` is 2 with ``shifted_windows`` (plain + shifted) and 1 without (the paper's one block,
            24.42 M parameters in total; every further block adds ``4 C^2 + 8 C`` parameters, 66,560 at C = 128).
        position_encoding: ``"absolute"`` (default, the paper's eq. 17: :class:`AbsoluteFourierEncoding` of the
            target coordinate normalised to the whole volume's field of view, [-1, 1]) or ``"in_voxel"``
            (:class:`SubVoxelFourierEncoding` of the query's position between the voxel centres of each modality's
            LR grid, periodic with one LR voxel). Both give ``d_e = 6 pe_frequencies`` features.
        pe_frequencies: frequency bands of the positional encoding (``d_e = 6 pe_frequencies``).
        decoder_hidden, decoder_layers: the implicit MLP decoder (paper: 4 layers of 256), one per modality.
        fusion_hidden: hidden width of ``f_proj``, ``f_fusion``, ``f_seg``, ``f_cls`` (default ``feature_channels``).
        hr_shape: HR patch shape of the training forward (default: the element-wise maximum of the LR shapes).
        normalize_features: layer-normalise every encoder output over its channels at each voxel (no affine), which
            fixes the scale of the features that L_KD, CMFA and FDL compare; without it the features (and L_KD) grew
            without bound in the quick profile (feature norms ~1600 after 20 epochs, L_KD ~1e6).

    Forward modes:
        * training: ``forward(t1w_lr, t2w_lr, coord, position)`` with LR patches ``(B, C_in, *lr_shape_m)`` that
          cover the same field of view, ``coord`` ``(B, K, 3)`` normalised query points of the HR patch grid (whose
          shape is ``hr_shape`` or, if ``None``, the element-wise maximum of the LR shapes) and ``position``
          ``(B, K, 3)`` the same points normalised to the field of view of the whole volume the patches were cut
          from (key ``position`` of :class:`~monai_inr.transforms.RandNexusPatchd`; read by the absolute encoding
          only; ``None``: the patches are whole volumes, ``position = coord``); returns a dict with ``pred``
          ``(B, K, 2)`` and the auxiliary outputs of the enabled modules (see :meth:`query`).
        * dense: ``forward(image)`` with ``image`` ``(B, 2 C_in, D, H, W)`` = both modalities on one grid; returns
          ``(B, 2, D, H, W)``, the prediction at every voxel of that grid, taken as the whole volume (model-zoo
          ``verify_net_in_out`` and TorchScript export).
    """

    def __init__(
        self,
        in_channels: int = 1,
        feature_channels: int = 128,
        encoder: str = "RDN",
        encoder_kwargs: dict[str, Any] | None = None,
        dual_branch: bool = True,
        cross_attention: bool = True,
        segmentation: bool = True,
        share_encoder_weights: bool = False,
        num_classes: int = 3,
        attention_window: int = 4,
        attention_heads: int = 4,
        shifted_windows: bool = False,
        attention_blocks: int | None = None,
        position_encoding: Literal["absolute", "in_voxel"] = "absolute",
        pe_frequencies: int = 4,
        decoder_hidden: int = 256,
        decoder_layers: int = 4,
        fusion_hidden: int | None = None,
        hr_shape: tuple[int, int, int] | None = None,
        normalize_features: bool = True,
    ) -> None:
        super().__init__()
        c = int(feature_channels)
        self.in_channels, self.feature_channels = int(in_channels), c
        self.dual_branch, self.cross_attention = bool(dual_branch), bool(cross_attention)
        self.segmentation = bool(segmentation)
        self.num_classes = int(num_classes)
        self.hr_shape = tuple(int(n) for n in hr_shape) if hr_shape is not None else None
        self.normalize_features = bool(normalize_features)
        kw = {"spatial_dims": 3, "in_channels": self.in_channels, "out_channels": c, **(encoder_kwargs or {})}
        shared1 = get_encoder(encoder, **kw)
        self.encoder_shared = nn.ModuleList([shared1, shared1 if share_encoder_weights else get_encoder(encoder, **kw)])
        self.encoder_spec = nn.ModuleList([get_encoder(encoder, **kw) for _ in range(2)]) if self.dual_branch else None
        self.receptive_radius = int(getattr(shared1, "receptive_radius", 0))
        hidden = int(fusion_hidden or c)
        blocks = int(attention_blocks) if attention_blocks is not None else (2 if shifted_windows else 1)
        if blocks < 1 or (shifted_windows and blocks < 2):
            raise ValueError(
                f"attention_blocks must be >= 1 (>= 2 with shifted_windows: one block cannot mix plain and shifted "
                f"windows), got {attention_blocks}."
            )
        self.shifted_windows = bool(shifted_windows) and self.cross_attention
        # block 0 keeps the parameter names of the one-block network, so its checkpoints load unchanged
        self.attention = WindowCrossAttention(c, attention_heads, attention_window) if self.cross_attention else None
        self.extra_attention = (
            nn.ModuleList(
                [WindowCrossAttention(c, attention_heads, attention_window, shift=bool(shifted_windows) and k % 2 == 1)
                 for k in range(1, blocks)]
            )
            if self.cross_attention and blocks > 1
            else None
        )
        self.window = int(attention_window) if self.cross_attention else 1
        if self.dual_branch:
            self.proj = nn.ModuleList([_mlp([2 * c, hidden, c]) for _ in range(2)])  # f_proj per modality (eq. 16)
            self.classifier = _mlp([c, max(hidden // 2, 2), 2])  # f_cls (eq. 19), shared by both modalities
        if self.segmentation:
            self.seg_heads = nn.ModuleList([_mlp([c, hidden, self.num_classes]) for _ in range(2)])  # eq. 20-21
            self.seg_fusion = nn.ModuleList([_mlp([c + self.num_classes, hidden, c]) for _ in range(2)])  # eq. 22-23
        if position_encoding not in POSITION_ENCODINGS:
            raise ValueError(f"position_encoding must be one of {POSITION_ENCODINGS}, got {position_encoding!r}.")
        self.position_encoding = str(position_encoding)
        self.pos_enc = get_position_encoding(self.position_encoding, int(pe_frequencies))
        d_in = c + self.pos_enc.out_features
        self.decoders = nn.ModuleList(
            [_mlp([d_in] + [int(decoder_hidden)] * int(decoder_layers) + [1]) for _ in range(2)]
        )  # no output activation: targets are z-scored

    @property
    def encode_workspace_channels(self) -> int:
        """Activation values alive per LR voxel while one modality is encoded (the encoder's own estimate plus the
        output maps), for :mod:`monai_inr.inferers.memory`."""
        enc = getattr(self.encoder_shared[0], "workspace_channels", None)
        enc = int(enc) if enc is not None else 8 * self.feature_channels
        return enc + (2 if self.dual_branch else 1) * self.feature_channels

    @property
    def decode_workspace_channels(self) -> int:
        """Values alive per output voxel of a tile (sampled shared/specific maps of both modalities, attention, fusion,
        positional encoding and the decoder's hidden layers), for :mod:`monai_inr.inferers.memory`."""
        return 12 * self.feature_channels + 4 * self.decoders[0][0].out_features + 64

    @property
    def attention_halo(self) -> int:
        """Voxels of context beyond an output tile that the attention of the tile's voxels reads: half a window with
        shifted windows, rounded up to a whole window so tiles stay aligned to the partition (0 without)."""
        return self.window if self.shifted_windows else 0

    def __prepare_scriptable__(self) -> nn.Module:
        """What ``torch.jit.script`` compiles: :class:`~monai_inr.networks.export.ScriptableNexusINR`, the dense mode
        ``forward(image (B, 2 C, D, H, W))`` with the same parameters."""
        return ScriptableNexusINR(self)

    # ------------------------------------------------------------------ encoders
    def encode(self, t1w_lr: torch.Tensor, t2w_lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """LR feature maps (eq. 2-3): ``shared1``, ``shared2`` and, with ``dual_branch``, ``spec1``, ``spec2``."""
        for name, x in (("t1w", t1w_lr), ("t2w", t2w_lr)):
            if x.ndim != 5 or x.shape[1] != self.in_channels:
                raise ValueError(
                    f"{name} input must be (B, {self.in_channels}, D, H, W) but has shape {tuple(x.shape)}: "
                    f"mismatched channel count."
                )
        if t1w_lr.shape[0] != t2w_lr.shape[0]:
            raise ValueError(f"batch sizes differ: t1w {t1w_lr.shape[0]} vs t2w {t2w_lr.shape[0]}.")
        out: dict[str, torch.Tensor] = {}
        for m, x in enumerate((t1w_lr, t2w_lr)):
            maps = torch.split(self.encode_modality(x, m), self.feature_channels, dim=1)
            out.update(zip(self.map_names(m), maps))
        return out

    def map_names(self, m: int) -> list[str]:
        """Names of modality ``m``'s LR maps (0: T1w, 1: T2w) in the channel order of :meth:`encode_modality`."""
        return [f"shared{m + 1}"] + ([f"spec{m + 1}"] if self.encoder_spec is not None else [])

    def encode_modality(self, x: torch.Tensor, m: int) -> torch.Tensor:
        """Modality ``m``'s shared (and specific) LR maps concatenated along channels. Every encoder is a stack of
        stride-1 "same" convolutions followed by a per-voxel normalisation, so a tile encoded with a halo of
        :attr:`receptive_radius` voxels gives exactly the untiled maps in its core."""
        maps = [self.encoder_shared[m](x)] + ([self.encoder_spec[m](x)] if self.encoder_spec is not None else [])
        if self.normalize_features:
            maps = [_channel_layer_norm(v) for v in maps]
        return torch.cat(maps, dim=1) if len(maps) > 1 else maps[0]

    # ------------------------------------------------------------------ HR grid
    def attend(self, hr: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Add ``fused2`` (eq. 6) to HR maps ``{shared1, shared2, ...}`` (``shared2`` itself when attention is off)."""
        hr = dict(hr)
        fused = hr["shared2"]
        if self.attention is not None:
            fused = self.attention(fused, hr["shared1"])
        if self.extra_attention is not None:
            for block in self.extra_attention:  # plain / shifted partitions alternate with shifted_windows
                fused = block(fused, hr["shared1"])
        hr["fused2"] = fused
        return hr

    def encoding_input(self, lr_voxel: torch.Tensor, fov_coord: torch.Tensor) -> torch.Tensor:
        """What :attr:`pos_enc` reads for a query: ``fov_coord``, its normalised coordinate in the whole volume's field
        of view (absolute encoding), or ``lr_voxel``, its continuous voxel index in the modality's LR grid (in-voxel
        encoding; any whole-voxel offset, e.g. a patch start, gives the same encoding)."""
        return fov_coord if self.position_encoding == "absolute" else lr_voxel

    def upsample(self, lr: dict[str, torch.Tensor], hr_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """Trilinear up-sampling of every LR map to ``hr_shape`` over the same field of view (eq. 4-5) + attention.

        Cell-centred (``align_corners=False``, edge values extended), i.e. :func:`monai_inr.coords.sample_features`
        at the HR voxel centres, which is what the tiled inference does through world coordinates.
        """
        hr = {k: F.interpolate(v, size=tuple(hr_shape), mode="trilinear", align_corners=False) for k, v in lr.items()}
        return self.attend(hr)

    # ------------------------------------------------------------------ points
    def decode_points(
        self, z: dict[str, torch.Tensor], pos1: torch.Tensor, pos2: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Fusion, segmentation and decoding of sampled features (eq. 13-25).

        Args:
            z: ``(B, K, C)`` samples of the HR maps ``shared1``, ``shared2`` (pre-attention), ``fused2`` and (with
                ``dual_branch``) ``spec1``, ``spec2``.
            pos1, pos2: ``(B, K, 3)`` positions of the points for the T1w / T2w encodings, as
                :meth:`encoding_input` gives them (normalised whole-volume coordinates for the absolute encoding,
                continuous LR voxel indices for the in-voxel one).

        Returns:
            ``pred`` ``(B, K, 2)`` (T1w, T2w); with ``dual_branch`` ``z1_shared``, ``z2_shared`` (eq. 13, the T2w one
            after attention) and ``cls1``, ``cls2`` ``(B, K, 2)`` modality logits (eq. 19); with ``cross_attention``
            ``z1_teacher``, ``z2_fused`` (eq. 7-8) and ``t2_self`` ``(B, K, 1)`` (eq. 10-11); with ``segmentation``
            ``seg1``, ``seg2`` ``(B, K, num_classes)``.
        """
        out: dict[str, torch.Tensor] = {}
        e = (self.pos_enc(pos1).to(z["shared1"].dtype), self.pos_enc(pos2).to(z["shared1"].dtype))
        shared = (z["shared1"], z["fused2"])  # eq. 13
        preds = []
        for m in range(2):
            f = shared[m]
            if self.dual_branch:
                spec = z[f"spec{m + 1}"]
                f = self.proj[m](torch.cat([shared[m], spec], dim=-1)) + shared[m]  # eq. 15-16
                out[f"cls{m + 1}"] = self.classifier(spec)
            if self.segmentation:
                seg = self.seg_heads[m](f)
                out[f"seg{m + 1}"] = seg
                f = self.seg_fusion[m](torch.cat([f, seg], dim=-1))
            preds.append(self.decoders[m](torch.cat([f, e[m]], dim=-1)))
        out["pred"] = torch.cat(preds, dim=-1)
        if self.dual_branch:
            out["z1_shared"], out["z2_shared"] = shared
        if self.cross_attention:
            out["z1_teacher"], out["z2_fused"] = z["shared1"], z["fused2"]
            out["t2_self"] = self.decoders[1](torch.cat([z["shared2"], e[1]], dim=-1))
        return out

    def query(
        self, hr: dict[str, torch.Tensor], coord: torch.Tensor, pos1: torch.Tensor, pos2: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Trilinear samples of every HR map at ``coord`` ``(B, K, 3)`` (normalised HR-grid coordinates), decoded."""
        keys = [k for k in ("shared1", "shared2", "fused2", "spec1", "spec2") if k in hr]
        stacked = sample_features_stack([hr[k] for k in keys], coord)
        return self.decode_points(dict(zip(keys, stacked)), pos1, pos2)

    def _hr_shape(self, lr_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return self.hr_shape if self.hr_shape is not None else tuple(max(s) for s in zip(*lr_shapes))

    def forward(
        self,
        image: torch.Tensor,
        t2w_lr: torch.Tensor | None = None,
        coord: torch.Tensor | None = None,
        position: torch.Tensor | None = None,
    ) -> Any:
        if t2w_lr is None:
            return self.forward_dense(image)
        if coord is None:
            raise ValueError("training forward needs coord (B, K, 3) with t2w_lr.")
        if position is not None and position.shape != coord.shape:
            raise ValueError(f"position {tuple(position.shape)} must have the shape of coord {tuple(coord.shape)}.")
        lr_shapes = [tuple(image.shape[2:]), tuple(t2w_lr.shape[2:])]
        hr_shape = self._hr_shape(lr_shapes)
        hr = self.upsample(self.encode(image, t2w_lr), hr_shape)
        fov = coord if position is None else position.to(coord.dtype)  # both modalities cover the patch's FOV
        pos = [self.encoding_input(coords.normalized_to_voxel(coord, s), fov) for s in lr_shapes]
        return self.query(hr, coord, pos[0], pos[1])

    def forward_dense(self, image: torch.Tensor) -> torch.Tensor:
        """Both modalities on one grid ``(B, 2 C_in, D, H, W)`` -> predictions ``(B, 2, D, H, W)`` at its voxels."""
        if image.ndim != 5 or image.shape[1] != 2 * self.in_channels:
            raise ValueError(
                f"dense input must be (B, {2 * self.in_channels}, D, H, W) (both modalities), got {tuple(image.shape)}."
            )
        b, _, d, h, w = image.shape
        ci = self.in_channels
        hr = self.attend(self.encode(image[:, :ci], image[:, ci:]))
        z = {k: v.flatten(2).transpose(1, 2) for k, v in hr.items()}
        if self.position_encoding == "absolute":  # the grid is the whole volume: its own normalised coordinates
            pos = coords.normalized_grid((d, h, w), device=image.device).reshape(1, -1, 3).expand(b, -1, -1)
        else:  # voxel centres: no offset from an LR voxel centre
            pos = torch.zeros(b, d * h * w, 3, dtype=image.dtype, device=image.device)
        pred = self.decode_points(z, pos, pos)["pred"]
        return pred.transpose(1, 2).reshape(b, 2, d, h, w)


def sample_features_stack(maps: list[torch.Tensor], coord: torch.Tensor) -> list[torch.Tensor]:
    """Trilinear samples ``(B, K, C_i)`` of several same-grid maps at ``coord`` with one ``grid_sample`` call."""
    sizes = [m.shape[1] for m in maps]
    z = coords.sample_features(torch.cat(maps, dim=1), coord)
    return list(torch.split(z, sizes, dim=-1))
