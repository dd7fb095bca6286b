"""One module per method: the complete networks referenced by the bundles (``monai_inr.networks.nets.ArSSR``, ...)."""

from monai_inr.networks.nets.arssr import ArSSR

__all__ = ["ArSSR"]
