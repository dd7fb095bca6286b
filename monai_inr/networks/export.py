"""TorchScript export of the method networks in script mode, correct at every input size and scale.

``torch.jit.script(net)`` (what ``python -m monai.bundle ckpt_export`` does without ``--use_trace``, and what the
MONAI model-zoo CI runs) calls ``net.__prepare_scriptable__()`` first; every method network returns one of the
modules below from it. Each holds the network's own sub-modules and buffers under the same attribute names (the
exported ``state_dict`` has exactly the network's keys) and re-implements the network's inference ``forward`` in
TorchScript-compatible code: the output grid is computed from the input's shape and the requested scale at run time,
so the exported model is right for any input size and any scale, as the eager network is (tested against the eager
network at sizes and scales other than the export's, ``tests/test_export.py``). The exports are for inference: their
``forward`` runs without autograd (the shared modules use in-place activations, which TorchScript's optimised graphs
refuse under autograd from the second call on), so they return the same values with or without ``torch.no_grad()``.

Tracing (``--use_trace True``) records the output size of the example input as a constant, so a traced ArSSR,
Dual-ArbNet or ArRFR would silently return the wrong size for any other input; their whole-grid ``forward`` refuses
to be traced (:func:`refuse_trace`). The multi-contrast INR and Nexus-INR map every input voxel to an output voxel
and trace correctly, but script mode is the documented export for every bundle.

Exported signatures (``scale`` is a float or a list of floats, one per spatial axis):

* ArSSR: ``forward(image, coord=None, scale=2.0, chunk_size=65536)``;
* Dual-ArbNet: ``forward(image, reference=None, output_shape=None, scale=2.0)`` (a reference covering the target's
  field of view; unaligned references with ``ref_coord`` stay in Python);
* ArRFR: ``forward(image, reference=None, output_shape=None, scale=None, coord=None, cell=None)``;
* multi-contrast INR: ``forward(coords)``; Nexus-INR: ``forward(image)`` (the dense mode).
"""

from __future__ import annotations

import math
from typing import List, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from monai_inr.coords import cubic_bspline_coefficients, sample_cubic_bspline

__all__ = [
    "refuse_trace",
    "ScriptableArSSR",
    "ScriptableDualArbNet",
    "ScriptableArRFR",
    "ScriptableMultiContrastINR",
    "ScriptableNexusINR",
]

_TRACE_REFUSED = (
    "{name} cannot be exported with tracing, which would freeze the output size at the example input's shape; "
    "export in script mode instead (python -m monai.bundle ckpt_export without --use_trace)."
)


def refuse_trace(name: str) -> None:
    """Raise one clear sentence when called under ``torch.jit.trace`` (the whole-grid forward of a network whose
    output size depends on the input size)."""
    if torch.jit.is_tracing():
        raise RuntimeError(_TRACE_REFUSED.format(name=name))


# ------------------------------------------------------------------------------------------------------------------
# TorchScript versions of the geometry helpers of monai_inr.coords (same arithmetic, same results)
# ------------------------------------------------------------------------------------------------------------------


def _round_half_even(v: float) -> int:
    """Python's ``round`` (ties to even), which ``coords.scaled_shape`` uses."""
    f = math.floor(v)
    d = v - f
    if d > 0.5:
        return int(f) + 1
    if d < 0.5:
        return int(f)
    return int(f) + int(f) % 2


def _scale_list(scale: Union[float, List[float]], ndim: int) -> List[float]:
    if isinstance(scale, float):
        values = [scale for _ in range(ndim)]
    else:
        values = scale
        if len(values) == 1:
            values = [values[0] for _ in range(ndim)]
    if len(values) != ndim:
        raise ValueError("scale must be one number or one number per spatial axis.")
    for v in values:
        if not (v > 0.0 and math.isfinite(v)):
            raise ValueError("scale must be positive and finite on every axis.")
    return values


def _scaled_shape(shape: List[int], scale: List[float]) -> List[int]:
    out: List[int] = []
    for n, f in zip(shape, scale):
        out.append(max(1, _round_half_even(float(n) * f)))
    return out


# The helpers below are TorchScript mirrors of ``coords.normalized_grid``, ``dual_arbnet.nearest_indices`` and
# ``dual_arbnet.relative_coordinates`` (the script compiler cannot follow those functions' numpy paths);
# tests/test_export.py checks that each mirror equals its one home.


def _normalized_grid(shape: List[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``coords.normalized_grid(shape, flatten=False)``: ``(*shape, ndim)`` cell-centred (i, j, k) coordinates."""
    axes: List[torch.Tensor] = []
    for n in shape:
        axes.append((torch.arange(n, device=device, dtype=torch.float64) * 2 + 1) / n - 1)
    return torch.stack(torch.meshgrid(axes, indexing="ij"), dim=-1).to(dtype)


def _sample(features: torch.Tensor, coord: torch.Tensor, mode: str) -> torch.Tensor:
    """``coords.sample_features(features, coord, mode, padding_mode="border")``: ``(B, K, C)``."""
    nd = features.dim() - 2
    b = coord.shape[0]
    k = coord.shape[1]
    g = coord.flip(-1).to(features.dtype)
    if nd == 3:
        g = g.reshape(b, k, 1, 1, 3)
    else:
        g = g.reshape(b, k, 1, 2)
    out = F.grid_sample(features, g, mode=mode, padding_mode="border", align_corners=False)
    return out.reshape(b, features.shape[1], k).transpose(1, 2)


def _output_shape(
    in_shape: List[int], output_shape: Optional[List[int]], scale: Union[float, List[float]]
) -> List[int]:
    if output_shape is not None:
        if len(output_shape) != len(in_shape):
            raise ValueError("output_shape must have one size per spatial axis.")
        return output_shape
    return _scaled_shape(in_shape, _scale_list(scale, len(in_shape)))


# ------------------------------------------------------------------------------------------------------------------
# ArSSR
# ------------------------------------------------------------------------------------------------------------------


class ScriptableArSSR(nn.Module):
    """Script-mode twin of :class:`~monai_inr.networks.nets.ArSSR` (same parameters, same outputs)."""

    __constants__ = ["input_skip", "cubic_skip"]

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.encoder = net.encoder
        self.decoder = net.decoder
        self.output_activation = net.output_activation  # a module, or None
        self.feature_channels = int(net.feature_channels)
        self.out_channels = int(net.out_channels)
        self.input_skip = bool(net.input_skip)
        self.cubic_skip = net.skip_mode == "cubic"
        self.prefilter_radius = int(net.prefilter_radius)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        features = self.encoder(image).float()
        if self.cubic_skip:
            features = torch.cat([features, cubic_bspline_coefficients(image, self.prefilter_radius)], dim=1)
        elif self.input_skip:
            features = torch.cat([features, image.float()], dim=1)
        return features

    def decode(self, features: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
        feat = _sample(features, coord, "bilinear")
        c = self.feature_channels
        out = self.decoder(torch.cat([feat[..., :c], coord.to(feat.dtype)], dim=-1))
        if self.input_skip:
            if self.cubic_skip:
                out = out.float() + sample_cubic_bspline(features[:, c:], coord)
            else:
                out = out.float() + feat[..., c:]
            if self.output_activation is not None:
                out = self.output_activation(out)
        return out

    def forward(
        self,
        image: torch.Tensor,
        coord: Optional[torch.Tensor] = None,
        scale: Union[float, List[float]] = 2.0,
        chunk_size: int = 65536,
    ) -> torch.Tensor:
        with torch.no_grad():  # inference export: in-place activations of the shared modules need no autograd
            out = self._forward(image, coord, scale, chunk_size)
        return out

    def _forward(
        self,
        image: torch.Tensor,
        coord: Optional[torch.Tensor] = None,
        scale: Union[float, List[float]] = 2.0,
        chunk_size: int = 65536,
    ) -> torch.Tensor:
        features = self.encode(image)
        if coord is not None:
            return self.decode(features, coord)
        out_shape = _scaled_shape(list(image.shape[2:]), _scale_list(scale, image.dim() - 2))
        grid = _normalized_grid(out_shape, image.device, features.dtype).reshape(-1, len(out_shape))
        b = image.shape[0]
        parts: List[torch.Tensor] = []
        for start in range(0, grid.shape[0], chunk_size):
            q = grid[start : start + chunk_size].unsqueeze(0).expand(b, -1, -1)
            parts.append(self.decode(features, q))
        values = torch.cat(parts, dim=1)
        return values.transpose(1, 2).reshape([b, self.out_channels] + out_shape)


# ------------------------------------------------------------------------------------------------------------------
# Dual-ArbNet
# ------------------------------------------------------------------------------------------------------------------


def _nearest_indices(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(n_out, device=device, dtype=torch.int64)
    return torch.clamp(torch.div((2 * i + 1) * n_in, 2 * n_out, rounding_mode="floor"), max=n_in - 1)


def _relative_coordinates(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    i = torch.arange(n_out, device=device, dtype=torch.float64)
    idx = _nearest_indices(n_in, n_out, device).to(torch.float64)
    return (((2 * i + 1) / n_out - (2 * idx + 1) / n_in) * n_in).to(torch.float32)


def _gather_same_fov(x: torch.Tensor, out_shape: List[int]) -> torch.Tensor:
    ih = _nearest_indices(x.shape[-2], out_shape[0], x.device)
    iw = _nearest_indices(x.shape[-1], out_shape[1], x.device)
    return x.index_select(-2, ih).index_select(-1, iw)


class ScriptableFusionDecoder(nn.Module):
    """Script-mode twin of :class:`~monai_inr.networks.dual_arbnet_blocks.ImplicitFusionDecoder` (target output)."""

    __constants__ = ["unfold", "use_scale", "use_coord"]

    def __init__(self, dec: nn.Module) -> None:
        super().__init__()
        self.project_target = dec.project_target
        self.project_reference = dec.project_reference  # None in the single-contrast ablation
        self.fusion = dec.fusion
        self.idf_first = dec.idf_first
        self.idf = dec.idf
        self.idf_out = dec.idf_out
        self.sine = dec.sine
        self.skip_in = dec.skip_in
        self.skip_out = dec.skip_out
        self.unfold = bool(dec.unfold)
        self.use_scale = bool(dec.use_scale)
        self.use_coord = bool(dec.use_coord)
        self.hidden = int(dec.hidden)

    def _unfolded(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        if not self.unfold:
            return F.conv2d(x, weight, bias)
        return F.conv2d(x, weight.reshape(weight.shape[0], x.shape[1], 3, 3), bias, padding=1)

    def project_target_map(self, features: torch.Tensor) -> torch.Tensor:
        return self._unfolded(features, self.project_target.weight, self.project_target.bias)

    def skip(self, features: torch.Tensor) -> torch.Tensor:
        return self.skip_out(self.sine(self._unfolded(features, self.skip_in.weight, self.skip_in.bias)))

    def coordinate_code(
        self, inv_t: torch.Tensor, inv_r: Optional[torch.Tensor], rel: torch.Tensor
    ) -> torch.Tensor:
        b = inv_t.shape[0]
        h = rel.shape[-2]
        w = rel.shape[-1]
        parts: List[torch.Tensor] = []
        if self.use_scale:
            parts.append(inv_t.reshape(b, 1, 1, 1).expand(b, 1, h, w))
            if inv_r is not None:
                parts.append(inv_r.reshape(b, 1, 1, 1).expand(b, 1, h, w))
        if self.use_coord:
            parts.append(rel.expand(b, 2, h, w))
        if len(parts) == 0:
            return rel.new_zeros(b, 1, h, w)
        return torch.cat(parts, dim=1).to(rel.dtype)

    def forward(self, fused0: torch.Tensor, code: torch.Tensor, skip_target: torch.Tensor) -> torch.Tensor:
        fused = torch.relu(fused0)
        f_t = self.sine(self.idf_first(code))
        h = self.hidden
        for layer, lin in zip(self.fusion, self.idf):
            fused = layer(fused)
            f_t = self.sine(lin(f_t) * fused[:, :h])
        return self.idf_out(f_t) + skip_target


class ScriptableDualArbNet(nn.Module):
    """Script-mode twin of :class:`~monai_inr.networks.nets.DualArbNet` (same-FOV reference, target output)."""

    __constants__ = ["use_reference"]

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.encoder = net.encoder
        self.decoder = ScriptableFusionDecoder(net.decoder)
        self.in_channels = int(net.in_channels)
        self.use_reference = bool(net.use_reference)

    def forward(
        self,
        image: torch.Tensor,
        reference: Optional[torch.Tensor] = None,
        output_shape: Optional[List[int]] = None,
        scale: Union[float, List[float]] = 2.0,
    ) -> torch.Tensor:
        with torch.no_grad():  # inference export: in-place activations of the shared modules need no autograd
            out = self._forward(image, reference, output_shape, scale)
        return out

    def _forward(
        self,
        image: torch.Tensor,
        reference: Optional[torch.Tensor] = None,
        output_shape: Optional[List[int]] = None,
        scale: Union[float, List[float]] = 2.0,
    ) -> torch.Tensor:
        if image.dim() != 4 or image.shape[1] != self.in_channels:
            raise ValueError("Dual-ArbNet expects a (B, in_channels, H, W) target.")
        h = image.shape[2]
        w = image.shape[3]
        out_shape = _output_shape([h, w], output_shape, scale)
        b = image.shape[0]
        feat_t = self.encoder(image)
        fused0 = _gather_same_fov(self.decoder.project_target_map(feat_t), out_shape)
        skip_t = _gather_same_fov(self.decoder.skip(feat_t), out_shape)
        inv_t = torch.full([b], math.sqrt(float(h * w) / float(out_shape[0] * out_shape[1])), device=image.device)
        inv_r: Optional[torch.Tensor] = None
        if self.use_reference:
            ref = image if reference is None else reference
            if ref.dim() != 4 or ref.shape[0] != b or ref.shape[1] != image.shape[1]:
                raise ValueError("the reference must be (B, C, H, W) with the target's batch size and channels.")
            feat_r = self.encoder(ref)
            proj = self.decoder.project_reference
            if proj is not None:
                fused0 = fused0 + _gather_same_fov(self.decoder._unfolded(feat_r, proj.weight, proj.bias), out_shape)
            rh = ref.shape[2]
            rw = ref.shape[3]
            inv_r = torch.full(
                [b], math.sqrt(float(rh * rw) / float(out_shape[0] * out_shape[1])), device=image.device
            )
        rel = torch.stack(
            torch.broadcast_tensors(
                _relative_coordinates(h, out_shape[0], image.device)[:, None],
                _relative_coordinates(w, out_shape[1], image.device)[None, :],
            ),
            dim=0,
        )[None]
        code = self.decoder.coordinate_code(inv_t, inv_r, rel.to(fused0.dtype))
        return self.decoder(fused0, code, skip_t)


# ------------------------------------------------------------------------------------------------------------------
# ArRFR (LIIF decoder)
# ------------------------------------------------------------------------------------------------------------------


class ScriptableLIIF(nn.Module):
    """Script-mode twin of :class:`~monai_inr.networks.decoders.LIIFDecoder` (``project`` + ``query``)."""

    __constants__ = ["feat_unfold", "local_ensemble", "cell_decode", "spatial_dims"]

    def __init__(self, dec: nn.Module) -> None:
        super().__init__()
        self.first = dec.first
        self.body = dec.body
        self.spatial_dims = int(dec.spatial_dims)
        self.feature_channels = int(dec.feature_channels)
        self.hidden = int(dec.hidden)
        self.feature_inputs = int(dec.feature_inputs)
        self.feat_unfold = bool(dec.feat_unfold)
        self.local_ensemble = bool(dec.local_ensemble)
        self.cell_decode = bool(dec.cell_decode)
        self.corners: List[List[float]] = [[float(v) for v in c] for c in dec._corners()]

    def project(self, features: torch.Tensor) -> torch.Tensor:
        w = self.first.weight[:, : self.feature_inputs].to(features.dtype)
        b = self.first.bias.to(features.dtype)
        k = 3 if self.feat_unfold else 1
        if self.spatial_dims == 2:
            return F.conv2d(features, w.reshape(self.hidden, self.feature_channels, k, k), b, padding=k // 2)
        return F.conv3d(features, w.reshape(self.hidden, self.feature_channels, k, k, k), b, padding=k // 2)

    def query(self, latent: torch.Tensor, coord: torch.Tensor, cell: Optional[torch.Tensor]) -> torch.Tensor:
        sd = self.spatial_dims
        lo = self.feature_inputs
        w_rel = self.first.weight[:, lo : lo + sd]
        w_cell = self.first.weight[:, lo + sd :]
        b = coord.shape[0]
        shape = latent.shape[2:]
        if latent.dtype == torch.float16 or latent.dtype == torch.bfloat16:
            latent = latent.float()
        coord = coord.to(latent.dtype)
        size = torch.tensor(list(shape), dtype=coord.dtype, device=coord.device)
        grid = _normalized_grid(list(shape), coord.device, coord.dtype)
        grid = grid.movedim(-1, 0).unsqueeze(0).expand([b, sd] + list(shape))
        rel_cell: Optional[torch.Tensor] = None
        if self.cell_decode:
            if cell is None:
                raise ValueError("this decoder uses the cell size (cell_decode=True); pass cell (B, K, d).")
            rel_cell = cell.to(coord.dtype) * size
        preds: List[torch.Tensor] = []
        areas: List[torch.Tensor] = []
        for off in self.corners:
            q = coord
            if self.local_ensemble:
                shift = torch.tensor(off, dtype=coord.dtype, device=coord.device) / size + 1e-6
                q = (coord + shift).clamp_(-1 + 1e-6, 1 - 1e-6)
            z = _sample(latent, q, "nearest")
            centre = _sample(grid, q, "nearest")
            rel = (coord - centre) * size
            hid = z + rel.to(z.dtype) @ w_rel.T.to(z.dtype)
            if rel_cell is not None:
                hid = hid + rel_cell.to(z.dtype) @ w_cell.T.to(z.dtype)
            preds.append(self.body(hid))
            areas.append(torch.prod(rel.abs(), dim=-1, keepdim=True) + 1e-9)
        if not self.local_ensemble:
            return preds[0]
        total = torch.stack(areas, 0).sum(0)
        n = len(preds)
        out = preds[0] * (areas[n - 1] / total)
        for i in range(1, n):
            out = out + preds[i] * (areas[n - 1 - i] / total)
        return out


class ScriptableArRFR(nn.Module):
    """Script-mode twin of :class:`~monai_inr.networks.nets.ArRFR` (aligned sodium + T2w, any output grid)."""

    __constants__ = ["cell_decode"]

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.encoder_sodium = net.encoder_sodium
        self.encoder_t2w = net.encoder_t2w
        self.attention = net.attention
        self.decoder = ScriptableLIIF(net.decoder)
        self.in_channels = int(net.in_channels)
        self.out_channels = int(net.out_channels)
        self.chunk_size = int(net.chunk_size)
        self.default_scale = float(net.default_scale)
        self.cell_decode = bool(net.decoder.cell_decode)

    def forward(
        self,
        image: torch.Tensor,
        reference: Optional[torch.Tensor] = None,
        output_shape: Optional[List[int]] = None,
        scale: Optional[Union[float, List[float]]] = None,
        coord: Optional[torch.Tensor] = None,
        cell: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        with torch.no_grad():  # inference export: in-place activations of the shared modules need no autograd
            out = self._forward(image, reference, output_shape, scale, coord, cell)
        return out

    def _forward(
        self,
        image: torch.Tensor,
        reference: Optional[torch.Tensor] = None,
        output_shape: Optional[List[int]] = None,
        scale: Optional[Union[float, List[float]]] = None,
        coord: Optional[torch.Tensor] = None,
        cell: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        ci = self.in_channels
        if reference is None:
            if image.shape[1] != 2 * ci:
                raise ValueError("ArRFR needs a sodium and a T2w image: pass both, or one tensor with both channels.")
            sodium = image[:, :ci]
            t2w = image[:, ci:]
        else:
            if image.shape[1] != ci or reference.shape[1] != ci or image.shape != reference.shape:
                raise ValueError("the sodium and T2w slices must have the same shape and channel count.")
            sodium = image
            t2w = reference
        fused = self.attention(torch.cat([self.encoder_sodium(sodium), self.encoder_t2w(t2w)], dim=1))
        latent = self.decoder.project(fused).float()
        b = latent.shape[0]
        if coord is not None:
            if cell is None and self.cell_decode:
                raise ValueError("pass cell (B, K, 2) together with coord.")
            return self.decoder.query(latent, coord, cell)
        in_shape = list(latent.shape[2:])
        s: Union[float, List[float]] = self.default_scale
        if scale is not None:
            s = scale
        out_shape = _output_shape(in_shape, output_shape, s)
        grid = _normalized_grid(out_shape, latent.device, latent.dtype).reshape(-1, len(out_shape))
        cells = torch.tensor([2.0 / n for n in out_shape], dtype=latent.dtype, device=latent.device)
        cells = cells.expand(grid.shape[0], len(out_shape))
        parts: List[torch.Tensor] = []
        for start in range(0, grid.shape[0], self.chunk_size):
            q = grid[start : start + self.chunk_size].unsqueeze(0).expand(b, -1, -1)
            c = cells[start : start + self.chunk_size].unsqueeze(0).expand(b, -1, -1)
            parts.append(self.decoder.query(latent, q, c))
        values = torch.cat(parts, dim=1)
        return values.transpose(1, 2).reshape([b, self.out_channels] + out_shape)


# ------------------------------------------------------------------------------------------------------------------
# Multi-contrast INR (Fourier features or hash grid)
# ------------------------------------------------------------------------------------------------------------------


class ScriptableHashGrid(nn.Module):
    """Script-mode twin of :class:`~monai_inr.networks.encodings.HashGridEncoding` (inference: plain gathers, one
    level at a time; the same arithmetic per level as the vectorised groups of the original, so the same values).
    The per-level constants are plain lists (rebuilt on the table's device), so the state dict is the original's."""

    def __init__(self, enc: nn.Module) -> None:
        super().__init__()
        self.embeddings = enc.embeddings
        self.in_features = int(enc.in_features)
        self.num_levels = int(enc.num_levels)
        self.features_per_level = int(enc.features_per_level)
        self.log2_table_size = int(enc.log2_table_size)
        res, dense, mult, offset = [], [], [], []
        for name in ("dense", "hashed"):
            levels = getattr(enc, f"_{name}_levels").tolist()
            res += [[float(v) for v in row] for row in getattr(enc, f"_{name}_res").tolist()]
            mult += [[int(m) for m in row] for row in getattr(enc, f"_{name}_mult").tolist()]
            offset += [int(v) for v in getattr(enc, f"_{name}_offset").tolist()]
            dense += [name == "dense"] * len(levels)
        self.level_res: List[List[float]] = res  # per level, one resolution per axis
        self.level_dense: List[bool] = dense
        self.level_mult: List[List[int]] = mult
        self.level_offset: List[int] = offset

    def _level(self, u: torch.Tensor, level: int) -> torch.Tensor:
        k = u.shape[0]
        d = u.shape[1]
        dense = self.level_dense[level]
        dev = self.embeddings.device
        res = torch.tensor([self.level_res[level]], dtype=torch.float32, device=dev)
        mult = torch.tensor([self.level_mult[level]], dtype=torch.int64, device=dev)
        pos = res[:, None, :] * u[None]
        pos = torch.minimum(pos, (res - 1e-4)[:, None, :])
        base = pos.floor()
        frac = pos - base
        lo = base.to(torch.int64) * mult[:, None, :]
        hi = lo + mult[:, None, :]
        one_minus = 1.0 - frac
        idxs: List[torch.Tensor] = []
        ws: List[torch.Tensor] = []
        for c in range(1 << d):
            upper = (c >> (d - 1)) & 1 == 1
            ic = hi[..., 0] if upper else lo[..., 0]
            wc = frac[..., 0] if upper else one_minus[..., 0]
            for ax in range(1, d):
                upper = (c >> (d - 1 - ax)) & 1 == 1
                other = hi[..., ax] if upper else lo[..., ax]
                ic = ic + other if dense else torch.bitwise_xor(ic, other)
                wc = wc * (frac[..., ax] if upper else one_minus[..., ax])
            idxs.append(ic)
            ws.append(wc)
        idx = torch.stack(idxs, dim=-1)
        w = torch.stack(ws, dim=-1).to(self.embeddings.dtype)
        if not dense:
            idx = torch.bitwise_and(idx, (1 << self.log2_table_size) - 1)
        idx = idx + self.level_offset[level]
        rows = self.embeddings.index_select(0, idx.reshape(-1)).view(1, k, 1 << d, self.embeddings.shape[1])
        return (rows * w[..., None]).sum(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        if x.shape[-1] != self.in_features:
            raise ValueError("the coordinates have the wrong number of components for this hash grid.")
        u = ((x.reshape(-1, self.in_features).float().clamp(-1.0, 1.0) + 1.0) * 0.5).contiguous()
        parts: List[torch.Tensor] = []
        for level in range(len(self.level_res)):
            parts.append(self._level(u, level))
        out = torch.cat(parts, dim=0)
        return out.permute(1, 0, 2).reshape(list(lead) + [self.num_levels * self.features_per_level])


def _scriptable_encoding(enc: nn.Module) -> nn.Module:
    from monai_inr.networks.encodings import HashGridEncoding

    return ScriptableHashGrid(enc) if isinstance(enc, HashGridEncoding) else enc


class ScriptableSplitHeadMLP(nn.Module):
    """Script-mode twin of :class:`~monai_inr.networks.decoders.SplitHeadMLP`."""

    def __init__(self, dec: nn.Module) -> None:
        super().__init__()
        self.trunk = dec.trunk
        self.heads = dec.heads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        outs: List[torch.Tensor] = []
        for head in self.heads:
            outs.append(head(h))
        return torch.cat(outs, dim=-1)


class ScriptableMultiContrastINR(nn.Module):
    """Script-mode twin of :class:`~monai_inr.networks.nets.MultiContrastINR` (``forward(coords)``)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if net.architecture == "separate":
            self.branches = nn.ModuleList(
                [nn.Sequential(_scriptable_encoding(br[0]), ScriptableSplitHeadMLP(br[1])) for br in net.branches]
            )
            self.encoding = None
            self.decoder = None
        else:
            self.branches = None
            self.encoding = _scriptable_encoding(net.encoding)
            self.decoder = ScriptableSplitHeadMLP(net.decoder)
        for name in ("frame_affine", "fov_bounds", "intensity_range"):
            self.register_buffer(name, getattr(net, name))
        self.in_features = int(net.in_features)

    def query(self, points: torch.Tensor) -> torch.Tensor:
        x = points.float()
        if self.branches is not None:
            outs: List[torch.Tensor] = []
            for branch in self.branches:
                outs.append(branch(x))
            return torch.cat(outs, dim=-1)
        if self.encoding is not None and self.decoder is not None:
            return self.decoder(self.encoding(x))
        raise RuntimeError("the network has neither branches nor a shared encoding.")

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # inference export: in-place activations of the shared modules need no autograd
            out = self._forward(coords)
        return out

    def _forward(self, coords: torch.Tensor) -> torch.Tensor:
        if coords.dim() < 2 or coords.shape[1] != self.in_features:
            raise ValueError("expected channel-first coordinates (B, in_features, ...).")
        return self.query(coords.movedim(1, -1)).movedim(-1, 1)


# ------------------------------------------------------------------------------------------------------------------
# Nexus-INR (dense mode)
# ------------------------------------------------------------------------------------------------------------------


def _channel_layer_norm(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x.movedim(1, -1), [x.shape[1]], eps=1e-5).movedim(-1, 1)


class ScriptableNexusINR(nn.Module):
    """Script-mode twin of :class:`~monai_inr.networks.nets.NexusINR`'s dense mode: ``(B, 2 C, D, H, W)`` (both
    modalities on one grid, taken as the whole volume) -> ``(B, 2, D, H, W)``. The attention blocks and the
    positional encoding are the network's own (TorchScript-compatible) modules."""

    __constants__ = ["normalize_features", "absolute_position"]

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.encoder_shared = net.encoder_shared
        self.encoder_spec = net.encoder_spec  # None without dual_branch
        self.attention = net.attention  # None without cross_attention
        self.extra_attention = net.extra_attention  # None with one block
        self.proj = net.proj if net.dual_branch else None
        self.classifier = net.classifier if net.dual_branch else None  # not used by the prediction; kept for its keys
        self.seg_heads = net.seg_heads if net.segmentation else None
        self.seg_fusion = net.seg_fusion if net.segmentation else None
        self.pos_enc = net.pos_enc
        self.decoders = net.decoders
        self.in_channels = int(net.in_channels)
        self.normalize_features = bool(net.normalize_features)
        self.absolute_position = net.position_encoding == "absolute"

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return _channel_layer_norm(x) if self.normalize_features else x

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # inference export: in-place activations of the shared modules need no autograd
            out = self._forward(image)
        return out

    def _forward(self, image: torch.Tensor) -> torch.Tensor:
        ci = self.in_channels
        if image.dim() != 5 or image.shape[1] != 2 * ci:
            raise ValueError("dense input must be (B, 2 * in_channels, D, H, W) (both modalities).")
        b = image.shape[0]
        d = image.shape[2]
        h = image.shape[3]
        w = image.shape[4]
        t1 = image[:, :ci]
        t2 = image[:, ci:]
        shared1 = self._norm(self.encoder_shared[0](t1))
        shared2 = self._norm(self.encoder_shared[1](t2))
        fused2 = shared2
        if self.attention is not None:
            fused2 = self.attention(shared2, shared1)
        if self.extra_attention is not None:
            for block in self.extra_attention:
                fused2 = block(fused2, shared1)

        f1 = shared1.flatten(2).transpose(1, 2)
        f2 = fused2.flatten(2).transpose(1, 2)
        if self.encoder_spec is not None and self.proj is not None:
            spec1 = self._norm(self.encoder_spec[0](t1)).flatten(2).transpose(1, 2)
            spec2 = self._norm(self.encoder_spec[1](t2)).flatten(2).transpose(1, 2)
            f1 = self.proj[0](torch.cat([f1, spec1], dim=-1)) + f1
            f2 = self.proj[1](torch.cat([f2, spec2], dim=-1)) + f2
        if self.seg_heads is not None and self.seg_fusion is not None:
            s1 = self.seg_heads[0](f1)
            f1 = self.seg_fusion[0](torch.cat([f1, s1], dim=-1))
            s2 = self.seg_heads[1](f2)
            f2 = self.seg_fusion[1](torch.cat([f2, s2], dim=-1))
        if self.absolute_position:  # the grid's own cell-centred normalised coordinates
            axes = [(2.0 * torch.arange(n, device=image.device, dtype=torch.float64) + 1.0) / n - 1.0
                    for n in [d, h, w]]
            grid = torch.meshgrid(axes[0], axes[1], axes[2], indexing="ij")
            pos = torch.stack(grid, dim=-1).to(torch.float32).reshape(1, d * h * w, 3).expand(b, d * h * w, 3)
        else:
            pos = torch.zeros(b, d * h * w, 3, dtype=image.dtype, device=image.device)
        e = self.pos_enc(pos).to(shared1.dtype)
        p1 = self.decoders[0](torch.cat([f1, e], dim=-1))
        p2 = self.decoders[1](torch.cat([f2, e], dim=-1))
        pred = torch.cat([p1, p2], dim=-1)
        return pred.transpose(1, 2).reshape(b, 2, d, h, w)
