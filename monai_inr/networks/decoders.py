"""Point-wise implicit decoders: MLPs applied to per-query feature vectors ``(..., in_features)``.

References:
    * ArSSR: Q. Wu et al., "An Arbitrary Scale Super-Resolution Approach for 3D MR Images via Implicit Neural
      Representation", IEEE JBHI 27(2), 2023, section III-D and Fig. 3.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.layers.utils import get_act_layer

__all__ = ["ArSSRDecoder"]

_NO_ACTIVATION = (None, "none", "identity", "linear")


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
        # peak floats alive per query: input, a hidden activation pair, the skip sum (estimate for memory planning)
        self.workspace_channels = 3 * in_features + 2 * hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage2(x + self.stage1(x))

    def flops_per_query(self) -> int:
        """Multiply-adds x 2 of the linear layers for one query (biases and activations not counted)."""
        return sum(2 * m.in_features * m.out_features for m in self.modules() if isinstance(m, nn.Linear))
