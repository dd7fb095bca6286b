"""VGG-16 defined in the project (no torchvision): feature taps for perceptual losses and a small classifier head for
pre-training on project data.

K. Simonyan, A. Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015,
configuration D: thirteen 3x3 convolutions (stride 1, padding 1) with a ReLU after each, in five blocks of
64, 64 | 128, 128 | 256 x 3 | 512 x 3 | 512 x 3 channels, 2x2 max pooling after every block.

``features`` is an ``nn.Sequential`` with the same indices as torchvision's ``vgg16().features``, so the perceptual
taps of Johnson et al. (ECCV 2016) keep their usual names and positions: relu1_2 = 3, relu2_2 = 8, relu3_3 = 15,
relu4_3 = 22 (and relu5_3 = 29). Differences from the ImageNet network, all deliberate:

* ``in_channels`` (1 for MR magnitudes; ArRFR's public code also changes the first convolution to one channel);
* ``width``: channels of the first block (64 = VGG-16; smaller values give a narrow VGG for CPU tests and the quick
  profile, every block scaled alike, capped at ``8 * width``);
* the 224x224-specific 7x7x512 -> 4096 -> 4096 -> 1000 head is replaced by global average pooling and
  ``Linear(8 * width, classifier_hidden) -> ReLU -> Dropout -> Linear(classifier_hidden, num_classes)``, so any input
  size works; the head only serves the pre-training task, the perceptual losses use the convolutional taps;
* inputs are standardised inside the network with fixed ``input_mean``/``input_std`` buffers (0.5/0.5 maps [0, 1]
  images to [-1, 1]), so callers pass [0, 1] images; ``standardize_input=False`` passes them unchanged;
* ``batch_norm=True`` adds a batch normalisation after every convolution (the in-house default of the ArRFR bundle).

``VGG16(batch_norm=False, standardize_input=False)`` is the plain VGG-16 of ArRFR's public code (Yang et al. 2025,
section 3.3: a VGG-16 with a one-channel first convolution, no batch normalisation, images fed as they are), whose
``features`` state-dict keys are torchvision's; :func:`monai_inr.networks.vgg_weights.load_vgg16_weights` loads such
a file (e.g. the authors' ``vgg.pth``, if a user has it).

No pretrained weights are shipped or downloaded: ImageNet weights cannot be fetched here, and ArRFR pre-trains its
VGG on a shuffled set of sodium and T2w slices (section 3.3); the ArRFR bundle's ``pretraining`` section does that.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

__all__ = ["VGG16", "VGG16_TAPS", "VGG16_CONFIG"]

#: layer index of each named ReLU in :attr:`VGG16.features` (torchvision ``vgg16().features`` numbering)
VGG16_TAPS: dict[str, int] = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15,
    "relu4_1": 18, "relu4_2": 20, "relu4_3": 22,
    "relu5_1": 25, "relu5_2": 27, "relu5_3": 29,
}

#: configuration D, in units of the first block's width ("M" = 2x2 max pooling)
VGG16_CONFIG: tuple = (1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M")

_DEFAULT_TAPS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


class VGG16(nn.Module):
    """VGG-16 (configuration D) with a 1-channel input, named feature taps and a global-pooling classifier head.

    Args:
        in_channels: image channels (1 for MR magnitudes).
        num_classes: outputs of the classifier head (the pre-training task's classes).
        width: channels of the first block (64 = VGG-16).
        taps: default feature taps returned by :meth:`extract` (names of :data:`VGG16_TAPS`); the perceptual losses
            of ArRFR (Yang 2025, section 3.3) and Johnson et al. use relu1_2, relu2_2, relu3_3, relu4_3.
        classifier_hidden: width of the head's hidden layer.
        dropout: dropout before the last linear layer of the head.
        input_mean, input_std: fixed input standardisation ``(x - mean) / std`` applied first.
        standardize_input: apply that standardisation (``False``: the plain VGG-16 of ArRFR's public code, which
            sees the images as they are; ``input_mean``/``input_std`` are then ignored).
        batch_norm: a batch normalisation after every convolution (the "VGG-16-BN" variant; the taps keep their names
            and sit after the ReLUs, i.e. at other ``features`` indices than :data:`VGG16_TAPS`). Trained from scratch
            on a CPU budget the plain network stays at chance level for many epochs; with batch normalisation it
            learns the pre-training task within a few (measured on the ArRFR quick data, see the bundle README).

    ``forward(x)`` -> logits ``(B, num_classes)``; ``extract(x, taps)`` -> list of tap outputs (computes only the layers
    up to the deepest requested tap); ``tap_channels(name)`` -> channels of a tap.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        width: int = 64,
        taps: Sequence[str] = _DEFAULT_TAPS,
        classifier_hidden: int = 256,
        dropout: float = 0.5,
        input_mean: float = 0.5,
        input_std: float = 0.5,
        batch_norm: bool = False,
        standardize_input: bool = True,
    ) -> None:
        super().__init__()
        if width < 1 or in_channels < 1 or num_classes < 1:
            raise ValueError(f"width, in_channels and num_classes must be >= 1, got {width}, {in_channels}, "
                             f"{num_classes}.")
        if input_std <= 0:
            raise ValueError(f"input_std must be positive, got {input_std}.")
        layers: list[nn.Module] = []
        c = int(in_channels)
        self.tap_index: dict[str, int] = {}
        block, conv = 1, 0
        for v in VGG16_CONFIG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                block, conv = block + 1, 0
            else:
                out = int(v) * int(width)
                layers.append(nn.Conv2d(c, out, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out))
                layers.append(nn.ReLU(inplace=True))
                conv += 1
                self.tap_index[f"relu{block}_{conv}"] = len(layers) - 1
                c = out
        self.features = nn.Sequential(*layers)
        self.batch_norm = bool(batch_norm)
        self.standardize_input = bool(standardize_input)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Flatten(1),
            nn.Linear(c, classifier_hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(classifier_hidden, num_classes),
        )
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        self.width = int(width)
        self.taps = self._check_taps(taps)
        self.register_buffer("input_mean", torch.tensor(float(input_mean)), persistent=False)
        self.register_buffer("input_std", torch.tensor(float(input_std)), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (Kaiming) normal initialisation of the convolutions (fan-out, ReLU gain), zero biases, N(0, 0.01) linear
        weights: a plain 13-layer ReLU stack without batch normalisation does not train from PyTorch's default
        initialisation (the loss stays at chance), which is why VGG was originally trained in stages."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _check_taps(taps: Sequence[str]) -> tuple[str, ...]:
        taps = (taps,) if isinstance(taps, str) else tuple(taps)
        bad = [t for t in taps if t not in VGG16_TAPS]
        if bad or not taps:
            raise ValueError(f"unknown VGG-16 taps {bad or taps}; valid names: {', '.join(VGG16_TAPS)}.")
        return taps

    def tap_channels(self, name: str) -> int:
        """Channels of the named tap."""
        idx = self.tap_index[self._check_taps([name])[0]]
        conv = [m for m in list(self.features)[: idx + 1] if isinstance(m, nn.Conv2d)][-1]
        return int(conv.out_channels)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - input_mean) / input_std`` (``x`` itself when ``standardize_input`` is off), after a shape check."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"VGG16 expects (B, {self.in_channels}, H, W) images, got {tuple(x.shape)}.")
        if not self.standardize_input:
            return x
        return (x - self.input_mean.to(x.dtype)) / self.input_std.to(x.dtype)

    def extract(self, x: torch.Tensor, taps: Sequence[str] | None = None) -> list[torch.Tensor]:
        """Feature maps at ``taps`` (default :attr:`taps`), in the order given."""
        names = self.taps if taps is None else self._check_taps(taps)
        wanted = {self.tap_index[n]: n for n in names}
        last = max(wanted)
        h = self.standardize(x)
        found: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in wanted:
                found[wanted[i]] = h
            if i >= last:
                break
        return [found[n] for n in names]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(self.standardize(x))))
