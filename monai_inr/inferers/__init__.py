"""Inferers: every inferer the bundles use, one tiler (:func:`plan_tiles`) and one memory rule (:mod:`.memory`).

* :class:`ImplicitInferer`: encode once, query an arbitrary output grid in chunks, tiled encoder (ArSSR);
* :class:`SliceWiseInferer`: 2D target + reference networks slice by slice (Dual-ArbNet, ArRFR);
* :class:`MultiContrastGridInferer`: a fitted multi-contrast INR on the union-FOV grid;
* :class:`NexusVolumeInferer`: Nexus-INR on any world grid;
* :class:`SliceProfileInferer`: a subject-specific fit's thick-slice forward model (the INR over each slice profile).
* :class:`AutocastInferer`: any inferer under bf16 autocast where bf16 is native (:mod:`.precision`, the one home of
  that decision).
"""

from monai_inr.inferers.implicit import ImplicitInferer, ImplicitNetwork, TilePlan, plan_tiles

__all__ = ["ImplicitInferer", "ImplicitNetwork", "TilePlan", "plan_tiles"]

from monai_inr.inferers.slicewise import SliceWiseInferer, plan_reference, validate_scale_range

__all__ += ["SliceWiseInferer", "plan_reference", "validate_scale_range"]

from monai_inr.inferers.grid import MultiContrastGridInferer, predict_on_grid, predict_points

__all__ += ["MultiContrastGridInferer", "predict_on_grid", "predict_points"]

from monai_inr.inferers.nexus import NexusVolumeInferer, predict_subject, predict_volume

__all__ += ["NexusVolumeInferer", "predict_subject", "predict_volume"]

from monai_inr.inferers.profile import SLICE_PROFILES, SliceProfileInferer, profile_offsets

__all__ += ["SLICE_PROFILES", "SliceProfileInferer", "profile_offsets"]

from monai_inr.inferers.precision import AutocastInferer, native_bf16, resolve_amp_bf16

__all__ += ["AutocastInferer", "native_bf16", "resolve_amp_bf16"]
