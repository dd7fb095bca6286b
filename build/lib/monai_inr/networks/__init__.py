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

from monai_inr.networks.blocks import CBAM, ChannelAttention, Sine, SineLayer, SpatialAttention
from monai_inr.networks.dual_arbnet_blocks import AttentionFusionLayer, ImplicitFusionDecoder
from monai_inr.networks.nets import DualArbNet

__all__ += [
    "CBAM",
    "ChannelAttention",
    "SpatialAttention",
    "Sine",
    "SineLayer",
    "AttentionFusionLayer",
    "ImplicitFusionDecoder",
    "DualArbNet",
]

from monai_inr.networks.decoders import LIIFDecoder, unfold_features
from monai_inr.networks.encoders import EDSR
from monai_inr.networks.nets import ArRFR

__all__ += ["EDSR", "LIIFDecoder", "unfold_features", "ArRFR"]

from monai_inr.networks.decoders import SplitHeadMLP
from monai_inr.networks.encodings import FourierFeatures, HashGridEncoding, get_encoding
from monai_inr.networks.nets import MultiContrastINR

__all__ += ["SplitHeadMLP", "FourierFeatures", "HashGridEncoding", "get_encoding", "MultiContrastINR"]
