"""Inferers: whole-image inference for implicit networks (encode once, query an arbitrary grid in chunks)."""

from monai_inr.inferers.implicit import ImplicitInferer, ImplicitNetwork, TilePlan, plan_tiles

__all__ = ["ImplicitInferer", "ImplicitNetwork", "TilePlan", "plan_tiles"]
