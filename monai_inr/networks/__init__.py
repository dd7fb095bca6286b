"""Networks: encoders (feature extractors without upsampling), point-wise decoders, building blocks and the
per-method networks in :mod:`monai_inr.networks.nets`."""

from monai_inr.networks.blocks import ResidualBlock, ResidualDenseBlock, conv_nd
from monai_inr.networks.decoders import ArSSRDecoder
from monai_inr.networks.encoders import ENCODERS, RDN, ResCNN, SRResNet, get_encoder
from monai_inr.networks.nets import ArSSR

__all__ = [
    "conv_nd",
    "ResidualBlock",
    "ResidualDenseBlock",
    "ArSSRDecoder",
    "ENCODERS",
    "RDN",
    "ResCNN",
    "SRResNet",
    "get_encoder",
    "ArSSR",
]
