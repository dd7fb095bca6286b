"""One module per method: the complete networks referenced by the bundles (``monai_inr.networks.nets.ArSSR``, ...)."""

from monai_inr.networks.nets.arssr import ArSSR

__all__ = ["ArSSR"]

from monai_inr.networks.nets.dual_arbnet import DualArbNet

__all__ += ["DualArbNet"]

from monai_inr.networks.nets.arrfr import ArRFR

__all__ += ["ArRFR"]

from monai_inr.networks.nets.multi_contrast_inr import MultiContrastINR

__all__ += ["MultiContrastINR"]

from monai_inr.networks.nets.nexus_inr import NexusINR

__all__ += ["NexusINR"]

from monai_inr.networks.nets.liif import LIIF

__all__ += ["LIIF"]
