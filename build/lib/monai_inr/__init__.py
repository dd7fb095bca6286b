"""monai-inr: implicit-neural-representation MRI super-resolution on MONAI.

Modules, bottom to top: ``errors`` (:class:`InputError`, the one-sentence hook), ``coords`` (the geometry convention,
shared frames), ``io`` (every read and write), ``transforms`` (degradations, samplers, loaders), ``networks``
(encoders, implicit decoders, one module per method), ``losses``, ``metrics`` (the evaluation protocol), ``inferers``
(every inferer, one tiler, one memory rule), ``data`` (the synthetic brain, datalists, coordinate datasets),
``engines`` (prepare-batch functions, checks, ignite handlers, training steps).
"""

__version__ = "0.1.0"
