"""Nexus-INR building blocks: the two positional encodings and the (shifted-)window cross-attention.

Zhang et al., "Nexus-INR: Diverse Knowledge-guided Arbitrary-Scale Multimodal Medical Image Super-Resolution",
arXiv:2508.03073, 2025:

* :class:`AbsoluteFourierEncoding`: eq. 17 and 24-25, "positional encodings (Fourier features) for all target
  coordinates", of the query's normalised coordinate in the whole volume's field of view (the paper's encoding);
* :class:`SubVoxelFourierEncoding`: the earlier reading, Fourier features of the query's position between the voxel
  centres of one LR grid (periodic with the LR voxel; kept as an option);
* :class:`WindowCrossAttention`: eq. 6, T2w shared features (query) attend to T1w shared features (key/value), in
  cubic windows of the HR grid, optionally with the window partition shifted by half a window (Liu et al., "Swin
  Transformer", ICCV 2021) so that stacked blocks exchange information across window borders.

The modules are TorchScript-compatible: the dense-mode export (:mod:`monai_inr.networks.export`) uses them as they are.
"""

from __future__ import annotations

import math
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "POSITION_ENCODINGS",
    "AbsoluteFourierEncoding",
    "SubVoxelFourierEncoding",
    "get_position_encoding",
    "WindowCrossAttention",
    "window_partition",
    "window_merge",
    "shifted_window_mask",
]

#: the values of ``NexusINR(position_encoding=...)``
POSITION_ENCODINGS = ("absolute", "in_voxel")


class AbsoluteFourierEncoding(nn.Module):
    """Fourier features of a target coordinate in the whole volume's field of view (Zhang et al. 2025, eq. 17):
    ``[sin(pi 2^k x), cos(pi 2^k x)]`` for ``k = 0..num_frequencies-1`` on every axis of the normalised coordinate
    ``x`` (cell-centred, the FOV spans [-1, 1], :mod:`monai_inr.coords`), ``2 in_features num_frequencies`` features.

    The lowest band has a period of the whole FOV (2), so the encoding is unique over it; each further band halves
    the period (the NeRF / Tancik et al. 2020 log-linear positional encoding). The paper gives no band count; 4 keeps
    ``d_e = 24`` (the decoder's input width of the in-voxel encoding, so both have the same parameter count).

    The input must be the coordinate in the frame of the whole volume, never of a training patch: the training
    sampler (:class:`~monai_inr.transforms.RandNexusPatchd`, key ``position``) and the whole-volume inference
    (:func:`~monai_inr.inferers.nexus.predict_volume`, each modality's LR volume) both give that frame.

    Args:
        num_frequencies: frequency bands ``L``.
        in_features: coordinate dimensions (3).
    """

    def __init__(self, num_frequencies: int = 4, in_features: int = 3) -> None:
        super().__init__()
        if int(num_frequencies) < 1:
            raise ValueError(f"num_frequencies must be >= 1, got {num_frequencies}.")
        self.in_features = int(in_features)
        self.frame = "fov"
        # a buffer name of its own: a checkpoint of the in-voxel encoding ("frequencies") does not load silently
        bands = math.pi * (2.0 ** torch.arange(int(num_frequencies), dtype=torch.float32))
        self.register_buffer("bands", bands)

    @property
    def out_features(self) -> int:
        return 2 * self.in_features * self.bands.numel()

    def forward(self, coord: torch.Tensor) -> torch.Tensor:
        """``coord`` ``(..., in_features)`` normalised FOV coordinates -> ``(..., out_features)``."""
        ang = coord.float()[..., None] * self.bands
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1).flatten(-2)


class SubVoxelFourierEncoding(nn.Module):
    """Fourier positional encoding of a query's position in an LR grid: ``[sin(2 pi n v), cos(2 pi n v)]`` for
    ``n = 1..num_frequencies`` on every axis of the continuous voxel index ``v`` (``6 num_frequencies`` features).

    Integer frequencies make it periodic with the LR voxel spacing: it encodes where a query lies between the slices
    of a modality (no absolute position), is continuous everywhere (no jump at voxel borders, unlike a clipped
    relative coordinate) and is the same for a training patch (whose start is a whole number of LR voxels) and the
    whole volume. ``NexusINR(position_encoding="in_voxel")``; the paper's encoding is :class:`AbsoluteFourierEncoding`.
    """

    def __init__(self, num_frequencies: int = 4, in_features: int = 3) -> None:
        super().__init__()
        if int(num_frequencies) < 1:
            raise ValueError(f"num_frequencies must be >= 1, got {num_frequencies}.")
        self.in_features = int(in_features)
        self.frame = "voxel"
        freqs = torch.arange(1, int(num_frequencies) + 1, dtype=torch.float32) * (2 * math.pi)
        self.register_buffer("frequencies", freqs)

    @property
    def out_features(self) -> int:
        return 2 * self.in_features * self.frequencies.numel()

    def forward(self, voxel: torch.Tensor) -> torch.Tensor:
        """``voxel`` ``(..., in_features)`` continuous LR voxel indices -> ``(..., out_features)``."""
        ang = (voxel.float()[..., None] - torch.round(voxel.float())[..., None]) * self.frequencies
        return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1).flatten(-2)


def get_position_encoding(name: str, num_frequencies: int = 4) -> nn.Module:
    """``"absolute"`` -> :class:`AbsoluteFourierEncoding`, ``"in_voxel"`` -> :class:`SubVoxelFourierEncoding`."""
    if name == "absolute":
        return AbsoluteFourierEncoding(num_frequencies)
    if name == "in_voxel":
        return SubVoxelFourierEncoding(num_frequencies)
    raise ValueError(f"position_encoding must be one of {POSITION_ENCODINGS}, got {name!r}.")


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """``(B, C, D, H, W)`` -> ``(B, nW, window^3, C)``: the tokens of every cubic window (windows in C order)."""
    b, c, d, h, w = x.shape
    s = window
    x = x.reshape(b, c, d // s, s, h // s, s, w // s, s).permute(0, 2, 4, 6, 3, 5, 7, 1)
    return x.reshape(b, (d // s) * (h // s) * (w // s), s * s * s, c)


def window_merge(x: torch.Tensor, shape: List[int], window: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B, nW, window^3, C)`` -> ``(B, C, *shape)``."""
    b, c = x.shape[0], x.shape[-1]
    d, h, w = shape[0], shape[1], shape[2]
    s = window
    x = x.reshape(b, d // s, h // s, w // s, s, s, s, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.reshape(b, c, d, h, w)


def shifted_window_mask(shape: List[int], window: int, shift: int, device: torch.device) -> torch.Tensor:
    """``(nW, window^3, window^3)`` boolean mask (``True``: may attend) of the shifted partition of a grid rolled by
    ``-shift`` on every axis (Swin Transformer's cyclic shift): tokens that were on opposite sides of the grid before
    the roll never attend to each other, so the result equals a partition whose window borders lie at ``shift + k
    window`` and which is clipped at the grid's borders."""
    labels = torch.zeros(shape[0], shape[1], shape[2], dtype=torch.long, device=device)
    for axis in range(3):
        n = shape[axis]
        idx = torch.arange(n, device=device)
        # the three strips of Swin's mask along this axis: [0, n - window), [n - window, n - shift), [n - shift, n)
        strip = (idx >= n - window).long() + (idx >= n - shift).long()
        view = [1, 1, 1]
        view[axis] = n
        labels = labels * 3 + strip.reshape(view)
    tokens = window_partition(labels[None, None].float(), window)[0, :, :, 0]  # (nW, t)
    return tokens[:, :, None] == tokens[:, None, :]


class WindowCrossAttention(nn.Module):
    """Multi-head cross-attention in cubic windows of a 3D feature grid (pre-norm, residual), Zhang et al. 2025 eq. 6.

    ``out = q_map + W_o MHA(LN(q_map) W_q, LN(kv_map) W_k, LN(kv_map) W_v)`` computed independently inside every
    ``window^3`` block (``torch.nn.functional.scaled_dot_product_attention``). Global voxel-wise attention over a
    40^3 patch would need a 64,000^2 matrix per head and sample (16 GB in fp32); a 4^3 window keeps it at 64^2 and
    still lets each T2w voxel choose among the T1w voxels of its neighbourhood (two T2w slice spacings along y).

    With ``shift`` the partition is displaced by ``window // 2`` voxels on every axis (Swin Transformer, Liu et al.
    2021: cyclic roll plus an attention mask for the wrapped strips, :func:`shifted_window_mask`); a block with the
    plain partition followed by a shifted one lets every T2w voxel attend to T1w voxels of the neighbouring windows.

    Args:
        channels: feature channels (divisible by ``num_heads``).
        num_heads: attention heads.
        window: window edge in voxels; every spatial size must be a multiple of it.
        shift: use the partition shifted by ``window // 2`` (``window >= 2``).
    """

    def __init__(self, channels: int, num_heads: int = 4, window: int = 4, shift: bool = False) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads}).")
        if int(window) < 1:
            raise ValueError(f"window must be >= 1, got {window}.")
        if shift and int(window) < 2:
            raise ValueError(f"shifted windows need window >= 2 (a shift of window // 2 voxels), got {window}.")
        self.channels, self.num_heads, self.window = int(channels), int(num_heads), int(window)
        self.shift = self.window // 2 if shift else 0
        self.norm_q = nn.LayerNorm(channels)
        self.norm_kv = nn.LayerNorm(channels)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.proj = nn.Linear(channels, channels)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[0], x.shape[1]
        return x.reshape(n, t, self.num_heads, self.channels // self.num_heads).transpose(1, 2)

    def forward(self, query_map: torch.Tensor, context_map: torch.Tensor) -> torch.Tensor:
        """``query_map`` and ``context_map`` ``(B, C, D, H, W)`` -> attended query map of the same shape."""
        if query_map.shape != context_map.shape:
            raise ValueError("query and context maps differ in shape.")
        b, c, d, h, w = query_map.shape
        s = self.window
        if d % s != 0 or h % s != 0 or w % s != 0:
            raise ValueError(
                "the HR grid ({}, {}, {}) must be a multiple of the attention window {} on every axis.".format(
                    d, h, w, s
                )
            )
        q_in, kv_in = query_map, context_map
        mask: Optional[torch.Tensor] = None
        if self.shift > 0:
            q_in = torch.roll(q_in, shifts=[-self.shift, -self.shift, -self.shift], dims=[2, 3, 4])
            kv_in = torch.roll(kv_in, shifts=[-self.shift, -self.shift, -self.shift], dims=[2, 3, 4])
            m = shifted_window_mask([d, h, w], s, self.shift, query_map.device)  # (nW, t, t)
            mask = m[None].expand(b, m.shape[0], m.shape[1], m.shape[2]).reshape(-1, 1, m.shape[1], m.shape[2])
        t = s * s * s
        # (B nW, t, C): batch and windows in one leading axis, the 4D layout of the fused attention kernels
        kv = self.norm_kv(window_partition(kv_in, s).reshape(-1, t, c))
        q = self._heads(self.to_q(self.norm_q(window_partition(q_in, s).reshape(-1, t, c))))
        out = F.scaled_dot_product_attention(q, self._heads(self.to_k(kv)), self._heads(self.to_v(kv)), attn_mask=mask)
        out = self.proj(out.transpose(1, 2).reshape(b, -1, t, c))
        out = window_merge(out, [d, h, w], s)
        if self.shift > 0:
            out = torch.roll(out, shifts=[self.shift, self.shift, self.shift], dims=[2, 3, 4])
        return query_map + out
