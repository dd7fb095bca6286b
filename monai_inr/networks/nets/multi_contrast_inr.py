"""Subject-specific multi-contrast implicit neural representation (split-head INR).

J. McGinnis*, S. Shit*, H. B. Li, V. Sideri-Lampretsa, R. Graf, M. Dannecker, J. Pan, N. Stolt Ansó, M. Mühlau,
J. S. Kirschke, D. Rueckert, B. Wiestler, "Multi-contrast MRI Super-resolution via Implicit Neural Representations",
MICCAI 2023.

One network per subject maps a point ``x`` of the subject's anatomy (world coordinates normalised to one shared frame)
to the intensities of both contrasts, ``[I1, I2] = f(gamma(x))``. It is fitted only to the subject's two anisotropic
low-resolution scans, each voxel supervising its own contrast (eq. 1), and then sampled on any isotropic grid.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from monai_inr.networks.decoders import SplitHeadMLP
from monai_inr.networks.encodings import get_encoding
from monai_inr.networks.export import ScriptableMultiContrastINR

__all__ = ["MultiContrastINR", "ARCHITECTURES"]

#: ``split_head``: the paper's model; ``vanilla``: one trunk with one linear output per contrast (ablation);
#: ``separate``: one independent encoding + MLP per contrast (the single-contrast INR baseline, in one module).
ARCHITECTURES = ("split_head", "vanilla", "separate")


class MultiContrastINR(nn.Module):
    """Coordinate network ``(x, y, z) -> (I_1, ..., I_C)`` with a Fourier-feature or hash-grid input encoding.

    Paper configuration (section 2 and Table 3; upstream ``MLPv2``): Gaussian Fourier features with 256 frequencies
    of scale 4 (512 features), a shared trunk of five 1024-wide ReLU layers and two heads ``1024 -> 512 -> 1``,
    5,774,338 parameters. The fast CPU path replaces the Fourier features by a multiresolution hash grid
    (:class:`~monai_inr.networks.encodings.HashGridEncoding`) and shrinks the MLP.

    The subject's geometry is stored in buffers, so a checkpoint alone defines the fitted subject (the same reason
    the Fourier matrix ``B`` is a buffer; ``bundles/multi_contrast_inr/docs/README.md``, "Method"):

    * ``frame_affine`` ``(4, 4)`` float64: normalised network coordinates -> world millimetres;
    * ``fov_bounds`` ``(2, 3)``: lower and upper corner of the union field of view in normalised coordinates;
    * ``intensity_range`` ``(C, 2)``: the min/max that mapped each contrast to [0, 1].

    They are set with :meth:`set_geometry` (by :class:`monai_inr.data.coordinates.ContrastPair`) before fitting.

    Args:
        architecture: one of :data:`ARCHITECTURES`.
        encoding: ``"fourier"`` or ``"hashgrid"``.
        num_contrasts: outputs (2 in the paper; 1 gives a single-contrast INR).
        in_features: coordinate dimension.
        encoding_kwargs: arguments of the encoding (``FourierFeatures``: ``num_frequencies``, ``scale``, ``seed``;
            ``HashGridEncoding``: ``num_levels``, ``features_per_level``, ``log2_table_size``, ...).
        trunk_width, trunk_layers, head_width, head_layers: MLP sizes (:class:`SplitHeadMLP`); ``vanilla`` and
            ``separate`` use linear heads.
        act: hidden activation (ReLU in the paper).

    Shapes:
        * ``forward(coords)``: channel-first coordinates ``(B, in_features, *spatial)`` (``*spatial`` may be empty,
          i.e. a batch of points ``(K, 3)``) -> ``(B, num_contrasts, *spatial)``.
        * ``query(points)``: channel-last ``(..., in_features)`` -> ``(..., num_contrasts)``.
    """

    def __init__(
        self,
        architecture: str = "split_head",
        encoding: str = "fourier",
        num_contrasts: int = 2,
        in_features: int = 3,
        encoding_kwargs: dict[str, Any] | None = None,
        trunk_width: int = 1024,
        trunk_layers: int = 5,
        head_width: int = 512,
        head_layers: int = 1,
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        arch = str(architecture).lower().replace("-", "_")
        if arch not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}.")
        if int(num_contrasts) < 1:
            raise ValueError(f"num_contrasts must be positive, got {num_contrasts}.")
        self._kwargs = {
            "architecture": arch,
            "encoding": str(encoding),
            "num_contrasts": int(num_contrasts),
            "in_features": int(in_features),
            "encoding_kwargs": dict(encoding_kwargs or {}),
            "trunk_width": int(trunk_width),
            "trunk_layers": int(trunk_layers),
            "head_width": int(head_width),
            "head_layers": int(head_layers),
            "act": act,
        }
        self.architecture = arch
        self.num_contrasts = int(num_contrasts)
        self.in_features = int(in_features)
        mlp = {"trunk_width": trunk_width, "trunk_layers": trunk_layers, "head_width": head_width, "act": act}
        if arch == "separate":
            self.branches = nn.ModuleList()
            for _ in range(self.num_contrasts):
                enc = get_encoding(encoding, in_features, **(encoding_kwargs or {}))
                dec = SplitHeadMLP(enc.out_features, num_heads=1, head_layers=0, **mlp)
                self.branches.append(nn.Sequential(enc, dec))
        else:
            self.encoding = get_encoding(encoding, in_features, **(encoding_kwargs or {}))
            self.decoder = SplitHeadMLP(
                self.encoding.out_features,
                num_heads=self.num_contrasts,
                head_layers=int(head_layers) if arch == "split_head" else 0,
                **mlp,
            )
        self.register_buffer("frame_affine", torch.eye(4, dtype=torch.float64))
        bounds = torch.tensor([[-1.0] * in_features, [1.0] * in_features], dtype=torch.float64)
        self.register_buffer("fov_bounds", bounds)
        self.register_buffer(
            "intensity_range", torch.tensor([[0.0, 1.0]] * self.num_contrasts, dtype=torch.float64)
        )

    @property
    def config(self) -> dict[str, Any]:
        """The bundle-config definition that rebuilds this network (``_target_`` and the constructor arguments),
        stored in the fit's checkpoint (:func:`monai_inr.engines.checks.save_network_checkpoint`), so inference
        builds the network that was fitted (e.g. a hash grid sized to the subject's acquisition)."""
        return {"_target_": f"{__name__.rsplit('.', 1)[0]}.MultiContrastINR", **copy.deepcopy(self._kwargs)}

    def __prepare_scriptable__(self) -> nn.Module:
        """What ``torch.jit.script`` compiles: :class:`~monai_inr.networks.export.ScriptableMultiContrastINR`
        (same parameters and buffers, ``forward(coords)``)."""
        return ScriptableMultiContrastINR(self)

    # ------------------------------------------------------------------ properties
    @property
    def out_channels(self) -> int:
        return self.num_contrasts

    @property
    def decode_workspace_channels(self) -> int:
        """Estimated peak values alive per query (memory planning)."""
        decs = [b[1] for b in self.branches] if self.architecture == "separate" else [self.decoder]
        encs = [b[0] for b in self.branches] if self.architecture == "separate" else [self.encoding]
        return max(d.workspace_channels for d in decs) + max(e.out_features for e in encs)

    def flops_per_query(self) -> int:
        """Multiply-adds x 2 of all linear layers (and of the Fourier projection) for one query."""
        flops = sum(2 * m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))
        for m in self.modules():
            if hasattr(m, "B"):
                flops += 2 * m.B.numel()
        return int(flops)

    def variant(self, **changes: Any) -> MultiContrastINR:
        """A fresh (re-initialised) network with this one's hyper-parameters except ``changes``
        (e.g. ``net.variant(architecture="vanilla")``)."""
        cfg = copy.deepcopy(self._kwargs)
        cfg.update(changes)
        return MultiContrastINR(**cfg)

    # ------------------------------------------------------------------ geometry
    def set_geometry(
        self,
        frame_affine: Any | None = None,
        fov_bounds: Any | None = None,
        intensity_range: Any | None = None,
    ) -> MultiContrastINR:
        """Store the subject's frame (normalised -> world ``4x4``), union FOV bounds (``2 x 3``, normalised) and
        per-contrast intensity ranges (``C x 2``) in the buffers; ``None`` leaves a buffer unchanged."""
        for name, value, shape in (
            ("frame_affine", frame_affine, (self.in_features + 1, self.in_features + 1)),
            ("fov_bounds", fov_bounds, (2, self.in_features)),
            ("intensity_range", intensity_range, (self.num_contrasts, 2)),
        ):
            if value is None:
                continue
            t = torch.as_tensor(np.asarray(value, dtype=np.float64))
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}.")
            getattr(self, name).copy_(t.to(getattr(self, name).device))
        return self

    # ------------------------------------------------------------------ forward
    def query(self, points: torch.Tensor) -> torch.Tensor:
        """Intensities ``(..., num_contrasts)`` at normalised points ``(..., in_features)`` (float32 compute)."""
        if not torch.jit.is_tracing() and points.shape[-1] != self.in_features:
            raise ValueError(f"expected points with {self.in_features} coordinates, got shape {tuple(points.shape)}.")
        x = points.float()
        if self.architecture == "separate":
            return torch.cat([branch(x) for branch in self.branches], dim=-1)
        return self.decoder(self.encoding(x))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """Channel-first coordinates ``(B, in_features, *spatial)`` -> ``(B, num_contrasts, *spatial)``."""
        if not torch.jit.is_tracing() and (coords.ndim < 2 or coords.shape[1] != self.in_features):
            raise ValueError(
                f"expected channel-first coordinates (B, {self.in_features}, ...), got shape {tuple(coords.shape)}."
            )
        return self.query(coords.movedim(1, -1)).movedim(-1, 1)
