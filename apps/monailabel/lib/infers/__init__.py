from .super_resolution import SuperResolution

__all__ = ["SuperResolution"]
