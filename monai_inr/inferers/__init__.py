"""Inferers: whole-image inference for implicit networks (encode once, query an arbitrary grid in chunks)."""

from monai_inr.inferers.implicit import ImplicitInferer, ImplicitNetwork, TilePlan, plan_tiles

__all__ = ["ImplicitInferer", "ImplicitNetwork", "TilePlan", "plan_tiles"]

from monai_inr.inferers.slicewise import SliceWiseInferer, plan_reference, validate_scale_range

__all__ += ["SliceWiseInferer", "plan_reference", "validate_scale_range"]
