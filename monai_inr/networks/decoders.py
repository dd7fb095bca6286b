"""Point-wise implicit decoders: MLPs applied to per-query feature vectors ``(..., in_features)``.

References:
    * ArSSR: Q. Wu et al., "An Arbitrary Scale Super-Resolution Approach for 3D MR Images via Implicit Neural
      Representation", IEEE JBHI 27(2), 2023, section III-D and Fig. 3.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.utils import get_act_layer

from monai_inr import coords

__all__ = ["ArSSRDecoder"]

_NO_ACTIVATION = (None, "none", "identity", "linear")
_FUSED = {"available": None}  # lazily probed: torch.ops.mkldnn._linear_pointwise (oneDNN GEMM + bias + ReLU)


def _fused_available() -> bool:
    if _FUSED["available"] is None:
        try:
            ok = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        except Exception:  # pragma: no cover - exotic builds
            ok = False
        _FUSED["available"] = bool(ok)
    return bool(_FUSED["available"])


def _mlp(sizes: list[int]) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), nn.ReLU(inplace=True)]
    return layers


class ArSSRDecoder(nn.Module):
    """The ArSSR decoder: eight fully connected layers with a ReLU after each, and a residual connection from the
    decoder input to the output of the fourth ReLU (Wu et al. 2023, Fig. 3).

    Stage 1: ``in -> hidden -> hidden -> hidden -> in`` (ReLU after each layer); stage 2 on ``x + stage1(x)``:
    ``in -> hidden -> hidden -> hidden -> out_channels`` (ReLU after the hidden layers, then ``output_activation``).
    With the defaults (131 -> 256 -> 1): 0.365 M parameters, 0.73 MFLOP per query.

    Args:
        in_features: per-query input size (ArSSR: 128 features + 3 coordinates = 131).
        hidden: width of the hidden layers.
        out_channels: output values per query.
        output_activation: activation after the last layer. ``"relu"`` as in the paper (outputs clamped at 0, right
            for non-negative magnitude images); ``None`` for a linear output (z-scored or ``(x - 0.5) / 0.5`` data,
            methods note section 7.7); any other name or ``(name, args)`` accepted by MONAI's
            :func:`~monai.networks.layers.utils.get_act_layer` (e.g. ``"sigmoid"``).

    Input ``(..., in_features)``, output ``(..., out_channels)``.
    """

    def __init__(
        self,
        in_features: int = 131,
        hidden: int = 256,
        out_channels: int = 1,
        output_activation: str | tuple | None = "relu",
    ) -> None:
        super().__init__()
        self.in_features = int(in_features)
        self.out_channels = int(out_channels)
        self.stage1 = nn.Sequential(*_mlp([in_features, hidden, hidden, hidden, in_features]))
        stage2 = _mlp([in_features, hidden, hidden, hidden])
        stage2.append(nn.Linear(hidden, out_channels))
        act = output_activation.lower() if isinstance(output_activation, str) else output_activation
        if act not in _NO_ACTIVATION:
            stage2.append(get_act_layer(act))
        self.stage2 = nn.Sequential(*stage2)
        self.use_fused = True  # see _fused_forward; set False to force the plain module path at inference
        self._param_cache: tuple | None = None
        # peak floats alive per query: input, a hidden activation pair, the skip sum (estimate for memory planning)
        self.workspace_channels = 3 * in_features + 2 * hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # TorchScript skips the `not is_scripting()` branch at compile time (the fused path is eager-only)
        if not torch.jit.is_scripting():
            if self.use_fused and self._can_fuse(x):
                out = self._fused_or_none(x)
                if out is not None:
                    return out
        return self.stage2(x + self.stage1(x))

    def _fused_or_none(self, x: torch.Tensor) -> torch.Tensor | None:
        try:
            return self._fused_forward(x)
        except RuntimeError:  # e.g. a CPU without oneDNN support for this dtype: never try again
            _FUSED["available"] = False
            return None

    def _can_fuse(self, x: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and not torch.is_grad_enabled()
            and not torch.jit.is_tracing()
            and not torch.jit.is_scripting()
            and _fused_available()
        )

    def _cast_params(self, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight, bias) of the 8 layers in ``dtype``, cached until a parameter changes (in place or replaced)."""
        lins = [m for m in self.modules() if isinstance(m, nn.Linear)]
        key = (dtype, tuple((m.weight.data_ptr(), m.weight._version, m.bias.data_ptr(), m.bias._version) for m in lins))
        if self._param_cache is None or self._param_cache[0] != key:
            cast = [(m.weight.detach().to(dtype), m.bias.detach().to(dtype)) for m in lins]
            self._param_cache = (key, cast)
        return self._param_cache[1]

    def _fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference-only CPU path, same math as the module path: each layer is one oneDNN GEMM with the bias and ReLU
        fused into it (``torch.ops.mkldnn._linear_pointwise``), instead of a GEMM plus separate bias and ReLU passes
        (MKL's fp32 GEMM is also much slower than oneDNN's on AMD CPUs). Honours CPU bf16 autocast by computing in
        bf16, as autocast would."""
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        lead = x.shape[:-1]
        h0 = x.reshape(-1, x.shape[-1]).to(dtype)
        op = torch.ops.mkldnn._linear_pointwise
        params = self._cast_params(dtype)
        h = h0
        for w, b in params[:4]:
            h = op(h, w, b, "relu", [], "")
        h = h.add_(h0)
        for w, b in params[4:7]:
            h = op(h, w, b, "relu", [], "")
        act = self.stage2[-1] if not isinstance(self.stage2[-1], nn.Linear) else None
        fuse_relu = isinstance(act, nn.ReLU)
        h = op(h, params[7][0], params[7][1], "relu" if fuse_relu else "none", [], "")
        if act is not None and not fuse_relu:
            h = act(h)
        return h.reshape(*lead, h.shape[-1])

    def flops_per_query(self) -> int:
        """Multiply-adds x 2 of the linear layers for one query (biases and activations not counted)."""
        return sum(2 * m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))


__all__ += ["SplitHeadMLP"]


class SplitHeadMLP(nn.Module):
    """Shared trunk and one head per output: the split-head decoder of McGinnis, Shit et al., "Multi-contrast MRI
    Super-resolution via Implicit Neural Representations", MICCAI 2023 (section 2, Fig. 1).

    Trunk: ``trunk_layers`` fully connected layers of width ``trunk_width``, each followed by ``act``. Each of the
    ``num_heads`` heads: ``head_layers`` layers of width ``head_width`` with ``act``, then a linear layer to one value.
    The outputs of the heads are concatenated, ``(..., in_features) -> (..., num_heads)``.

    * Paper (upstream ``MLPv2``): ``in_features=512, trunk_width=1024, trunk_layers=5, head_width=512,
      head_layers=1, num_heads=2`` -> 5,774,338 parameters.
    * ``head_layers=0`` is the paper's "vanilla INR" ablation: the trunk followed by one linear output per contrast
      (equivalent to a single ``Linear(trunk_width, num_heads)``; 4,725,762 parameters with the paper sizes).
    * ``num_heads=1, head_layers=0`` is one single-contrast INR.

    Args:
        in_features: input features per query (the encoding's size).
        num_heads: outputs (contrasts).
        trunk_width, trunk_layers: shared layers.
        head_width, head_layers: per-head hidden layers (0 for a linear head).
        act: activation name for MONAI's :func:`~monai.networks.layers.utils.get_act_layer` (paper: ReLU). The
            outputs are linear.
    """

    def __init__(
        self,
        in_features: int = 512,
        num_heads: int = 2,
        trunk_width: int = 1024,
        trunk_layers: int = 5,
        head_width: int = 512,
        head_layers: int = 1,
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        if min(int(in_features), int(num_heads), int(trunk_width), int(trunk_layers)) < 1:
            raise ValueError("in_features, num_heads, trunk_width and trunk_layers must be positive.")
        if int(head_layers) < 0 or (int(head_layers) > 0 and int(head_width) < 1):
            raise ValueError(f"head_layers must be >= 0 (head_width >= 1 when > 0), got {head_layers}, {head_width}.")
        self.in_features = int(in_features)
        self.num_heads = int(num_heads)
        self.trunk_width = int(trunk_width)
        self.head_layers = int(head_layers)
        trunk: list[nn.Module] = []
        width = self.in_features
        for _ in range(int(trunk_layers)):
            trunk += [nn.Linear(width, self.trunk_width), get_act_layer(act)]
            width = self.trunk_width
        self.trunk = nn.Sequential(*trunk)
        heads = []
        for _ in range(self.num_heads):
            layers: list[nn.Module] = []
            w = self.trunk_width
            for _ in range(self.head_layers):
                layers += [nn.Linear(w, int(head_width)), get_act_layer(act)]
                w = int(head_width)
            layers.append(nn.Linear(w, 1))
            heads.append(nn.Sequential(*layers))
        self.heads = nn.ModuleList(heads)
        self.use_fused = True  # see _fused_forward; set False to force the plain module path at inference
        self._param_cache: tuple | None = None
        # peak floats alive per query (estimate for memory planning): two trunk activations plus the head outputs
        self.workspace_channels = 2 * self.trunk_width + self.num_heads * (int(head_width) if self.head_layers else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk(x)
        return torch.cat([head(h) for head in self.heads], dim=-1)

    def flops_per_query(self) -> int:
        """Multiply-adds x 2 of the linear layers for one query (biases and activations not counted)."""
        return sum(2 * m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))


# Dual-ArbNet's implicit fusion decoder lives in its own module (fusion branch + modulated sine IDF); re-exported here.
from monai_inr.networks.dual_arbnet_blocks import ImplicitFusionDecoder  # noqa: E402

__all__ += ["ImplicitFusionDecoder"]


# ---------------------------------------------------------------------------------------------------------------------
# LIIF local implicit function (2D, 3D optional): LIIF itself and ArRFR's decoder.
# ---------------------------------------------------------------------------------------------------------------------

__all__ += ["LIIFDecoder", "unfold_features", "output_query_grid"]


def output_query_grid(
    output_shape: Sequence[int], device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """LIIF's query coordinates and cells for an output grid over the input's FOV: ``(K, d)`` cell-centred normalised
    coordinates of every output pixel (C order) and ``(K, d)`` cells ``2 / N_out`` per axis."""
    shape = tuple(int(n) for n in output_shape)
    grid = coords.normalized_grid(shape, device=device, dtype=dtype)
    cell = coords.cell_size(shape, device=device, dtype=dtype).expand(grid.shape[0], len(shape))
    return grid, cell


def unfold_features(features: torch.Tensor) -> torch.Tensor:
    """LIIF's 3x3 (3x3x3 in 3D) feature unfolding, zero outside the grid (Chen et al. 2021, section 3.2; ArRFR eq. 3).

    ``(B, C, *spatial)`` -> ``(B, C * 3^d, *spatial)``; channel ``c * 3^d + o`` holds channel ``c`` shifted by the
    ``o``-th offset of ``itertools.product((-1, 0, 1), repeat=d)`` (row-major), i.e. the ordering of
    ``torch.nn.functional.unfold(x, 3, padding=1)`` in 2D, which is also the layout of a ``3^d`` convolution kernel.
    """
    import itertools

    import torch.nn.functional as F

    sd = features.ndim - 2
    if sd not in (2, 3):
        raise ValueError(f"unfold_features expects a (B, C, H, W) or (B, C, D, H, W) map, got {tuple(features.shape)}.")
    shape = features.shape[2:]
    padded = F.pad(features, (1, 1) * sd)
    parts = []
    for off in itertools.product((0, 1, 2), repeat=sd):
        parts.append(padded[(slice(None), slice(None)) + tuple(slice(o, o + n) for o, n in zip(off, shape))])
    out = torch.stack(parts, dim=2)
    return out.reshape(features.shape[0], features.shape[1] * len(parts), *shape)


class LIIFDecoder(nn.Module):
    """The local implicit image function of LIIF (Y. Chen, S. Liu, X. Wang, "Learning Continuous Image Representation
    with Local Implicit Image Function", CVPR 2021, section 3), as used by ArRFR (Yang 2025, sections 3.2.4-3.2.6).

    For a query at cell-centred normalised coordinate ``x`` with cell size ``c`` (the output pixel size in normalised
    units) and an LR latent grid ``M`` of shape ``N`` (per axis):

    * **feature unfolding**: every latent code is the concatenation of its 3x3 (3x3x3) neighbours (``9 C`` channels
      in 2D, zero padding);
    * **local ensemble**: the four (eight in 3D) latent codes nearest to ``x`` are found by shifting ``x`` by
      ``+- 1/N`` (half an LR cell) plus ``1e-6`` and clamping to ``+-(1 - 1e-6)``, then a nearest lookup
      (:func:`monai_inr.coords.sample_features` with ``mode="nearest"``); each gives a prediction
      ``f([z*, (x - v*) * N, c * N])`` (relative coordinate and relative cell, both in LIIF's units) and the
      predictions are blended with weights equal to the area (volume) of the rectangle between ``x`` and the
      *diagonally opposite* latent centre, normalised to sum to one;
    * ``f`` is an MLP with ``num_layers`` linear layers of width ``hidden`` and a ReLU after every hidden layer, linear
      output (LIIF: 5 layers of 256 for RGB; ArRFR paper and public code: 5 layers of 128 -> 1
      (2308 -> 128 x 4 -> 1, the code's ``hidden_list [128] * 4``: four hidden layers, five linear layers).

    **Exact first-layer factorisation.** The first linear layer applied to ``[unfold(M)[v], rel, cell]`` is
    ``W_f unfold(M)[v] + W_r rel + W_c cell + b``. Because the lookup is a nearest gather, ``W_f unfold(M)[v]`` equals
    the value at ``v`` of the convolution of ``M`` with ``W_f`` reshaped to a 3x3 (3x3x3) kernel, so
    :meth:`project` computes that ``hidden``-channel map once on the LR grid and :meth:`query` gathers ``hidden``
    values per query instead of ``9 C``; the result is identical (tested against the explicit unfolding,
    :meth:`forward_unfolded`) at about ``9 C / hidden`` times less memory and arithmetic for the first layer.

    Args:
        feature_channels: channels ``C`` of the latent grid (ArRFR: 256 = two concatenated 128-channel encoders).
        out_channels: values per query.
        hidden: MLP width.
        num_layers: linear layers of the MLP (>= 2).
        spatial_dims: 2 (LIIF, ArRFR) or 3.
        feat_unfold: 3x3 feature unfolding (LIIF ``feat_unfold``).
        local_ensemble: blend the 2^d nearest latent codes (otherwise one nearest lookup at ``x``).
        cell_decode: feed the relative cell size.
        output_activation: activation after the last layer (``None``: linear, as LIIF and ArRFR).

    Shapes: :meth:`project` ``(B, C, *N)`` -> ``(B, hidden, *N)``; :meth:`query` latent + ``coord`` ``(B, K, d)``
    (+ ``cell`` ``(B, K, d)``) -> ``(B, K, out_channels)``; :meth:`forward` = ``query(project(features), ...)``.
    """

    def __init__(
        self,
        feature_channels: int = 64,
        out_channels: int = 1,
        hidden: int = 256,
        num_layers: int = 5,
        spatial_dims: int = 2,
        feat_unfold: bool = True,
        local_ensemble: bool = True,
        cell_decode: bool = True,
        output_activation: str | tuple | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if num_layers < 2 or hidden < 1 or feature_channels < 1:
            raise ValueError(f"need num_layers >= 2, hidden >= 1, feature_channels >= 1; got {num_layers}, {hidden}, "
                             f"{feature_channels}.")
        self.spatial_dims = int(spatial_dims)
        self.feature_channels = int(feature_channels)
        self.out_channels = int(out_channels)
        self.hidden = int(hidden)
        self.num_layers = int(num_layers)
        self.feat_unfold = bool(feat_unfold)
        self.local_ensemble = bool(local_ensemble)
        self.cell_decode = bool(cell_decode)
        self.kernel_volume = 3**self.spatial_dims if self.feat_unfold else 1
        self.feature_inputs = self.feature_channels * self.kernel_volume
        self.in_features = self.feature_inputs + self.spatial_dims * (2 if self.cell_decode else 1)
        self.first = nn.Linear(self.in_features, self.hidden)
        layers: list[nn.Module] = [nn.ReLU(inplace=True)]
        for _ in range(self.num_layers - 2):
            layers += [nn.Linear(self.hidden, self.hidden), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(self.hidden, self.out_channels))
        act = output_activation.lower() if isinstance(output_activation, str) else output_activation
        if act not in _NO_ACTIVATION:
            layers.append(get_act_layer(act))
        self.body = nn.Sequential(*layers)
        corners = 2**self.spatial_dims if self.local_ensemble else 1
        # per query: for each corner the gathered latent, two hidden activations and the prediction (memory planning)
        self.workspace_channels = corners * (3 * self.hidden + 2 * self.out_channels + 4 * self.spatial_dims)

    # ------------------------------------------------------------------------------------------------ LR side
    def project(self, features: torch.Tensor) -> torch.Tensor:
        """First-layer feature term (with the bias) on the latent grid: ``(B, hidden, *N)`` (see the class docstring)."""
        import torch.nn.functional as F

        if features.ndim != self.spatial_dims + 2 or features.shape[1] != self.feature_channels:
            raise ValueError(f"expected a (B, {self.feature_channels}, *spatial) {self.spatial_dims}D feature map, got "
                             f"{tuple(features.shape)}.")
        w = self.first.weight[:, : self.feature_inputs]
        w = w.to(features.dtype)
        b = self.first.bias.to(features.dtype)
        conv = F.conv2d if self.spatial_dims == 2 else F.conv3d
        if self.feat_unfold:
            kernel = w.reshape(self.hidden, self.feature_channels, *([3] * self.spatial_dims))
            return conv(features, kernel, b, padding=1)
        return conv(features, w.reshape(self.hidden, self.feature_channels, *([1] * self.spatial_dims)), b)

    # ------------------------------------------------------------------------------------------------ HR side
    def _corners(self) -> list[tuple[int, ...]]:
        if not self.local_ensemble:
            return [(0,) * self.spatial_dims]
        return list(itertools.product((-1, 1), repeat=self.spatial_dims))

    def _blend(self, latent, coord, cell, head) -> torch.Tensor:
        sd = self.spatial_dims
        if coord.ndim != 3 or coord.shape[-1] != sd:
            raise ValueError(f"coord must be (B, K, {sd}), got {tuple(coord.shape)}.")
        if self.cell_decode and cell is None:
            raise ValueError("this decoder uses the cell size (cell_decode=True); pass cell (B, K, d).")
        b = coord.shape[0]
        shape = tuple(int(n) for n in latent.shape[2:])
        if latent.dtype in (torch.float16, torch.bfloat16):  # coordinates and the nearest lookup stay in float32
            latent = latent.float()
        coord = coord.to(latent.dtype)
        size = torch.tensor(shape, dtype=coord.dtype, device=coord.device)
        grid = coords.normalized_grid(shape, flatten=False, device=coord.device, dtype=coord.dtype)
        grid = grid.movedim(-1, 0).unsqueeze(0).expand(b, *grid.shape[-1:], *shape)
        rel_cell = cell.to(coord.dtype) * size if self.cell_decode else None
        eps = 1e-6
        preds, areas = [], []
        for off in self._corners():
            q = coord
            if self.local_ensemble:
                shift = torch.tensor(off, dtype=coord.dtype, device=coord.device) / size + eps
                q = (coord + shift).clamp_(-1 + 1e-6, 1 - 1e-6)
            z = coords.sample_features(latent, q, mode="nearest")
            centre = coords.sample_features(grid, q, mode="nearest")
            rel = (coord - centre) * size
            preds.append(head(z, rel, rel_cell))
            areas.append(torch.prod(rel.abs(), dim=-1, keepdim=True) + 1e-9)
        if not self.local_ensemble:
            return preds[0]
        total = torch.stack(areas, 0).sum(0)
        n = len(preds)
        out = preds[0] * (areas[n - 1] / total)
        for i in range(1, n):
            out = out + preds[i] * (areas[n - 1 - i] / total)
        return out

    def query(self, latent: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor | None = None) -> torch.Tensor:
        """Values at ``coord`` from the projected latent grid of :meth:`project`: ``(B, K, out_channels)``."""
        lo = self.feature_inputs
        w_rel = self.first.weight[:, lo : lo + self.spatial_dims]
        w_cell = self.first.weight[:, lo + self.spatial_dims :]

        def head(z, rel, rel_cell):
            h = z + rel.to(z.dtype) @ w_rel.T.to(z.dtype)
            if rel_cell is not None:
                h = h + rel_cell.to(z.dtype) @ w_cell.T.to(z.dtype)
            return self.body(h)

        return self._blend(latent, coord, cell, head)

    def decode_grid(self, latent: torch.Tensor, output_shape: Sequence[int], chunk_size: int = 65536) -> torch.Tensor:
        """Values on a whole output grid over the latent grid's field of view: ``(B, out_channels, *output_shape)``,
        queried at the cell-centred pixel centres with their cells (:func:`output_query_grid`), ``chunk_size``
        queries at a time."""
        b = latent.shape[0]
        out_shape = tuple(int(s) for s in output_shape)
        grid, cells = output_query_grid(out_shape, latent.device, latent.dtype)
        parts = []
        for start in range(0, grid.shape[0], int(chunk_size)):
            q = grid[start : start + int(chunk_size)].unsqueeze(0).expand(b, -1, -1)
            c = cells[start : start + int(chunk_size)].unsqueeze(0).expand(b, -1, -1)
            parts.append(self.query(latent, q, c))
        values = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return values.transpose(1, 2).reshape(b, self.out_channels, *out_shape)

    def forward(self, features: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor | None = None) -> torch.Tensor:
        """``query(project(features), coord, cell)``: ``(B, K, out_channels)``."""
        return self.query(self.project(features), coord, cell)

    def forward_unfolded(
        self, features: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Reference path that materialises the unfolded ``9 C`` map and feeds the full input vector
        ``[z, rel_coord, rel_cell]`` to the MLP, as LIIF's code does (slow; for tests and checks)."""
        feats = unfold_features(features) if self.feat_unfold else features

        def head(z, rel, rel_cell):
            parts = [z, rel.to(z.dtype)] + ([rel_cell.to(z.dtype)] if rel_cell is not None else [])
            return self.body(self.first(torch.cat(parts, dim=-1)))

        return self._blend(feats, coord, cell, head)

    def flops_per_query(self) -> int:
        """Multiply-adds x 2 per query of the factorised decoder (all corners; the LR-grid projection not counted)."""
        corners = 2**self.spatial_dims if self.local_ensemble else 1
        mlp = sum(2 * m.in_features * m.out_features for m in self.body.modules() if isinstance(m, nn.Linear))
        return corners * (mlp + 2 * self.hidden * (self.in_features - self.feature_inputs))
