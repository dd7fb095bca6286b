"""monai-inr: implicit-neural-representation MRI super-resolution on MONAI.

Subpackages: ``coords`` (the geometry convention), ``transforms`` (degradations, samplers), ``networks`` (encoders,
implicit decoders, one module per method), ``inferers`` (the implicit inferer), ``metrics`` (the evaluation protocol),
``engines`` (prepare-batch functions, ignite handlers), ``data`` (the synthetic brain and datalist builders).
"""

__version__ = "0.1.0"
