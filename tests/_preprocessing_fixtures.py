"""Shared helpers for the preprocessing tests: the synthetic brain at 4 mm and cached tiny simulations."""

from __future__ import annotations

import functools

from preprocessing.simulation import SodiumMaps, get_preset, maps_from_subject, simulate_subject


@functools.lru_cache(maxsize=2)
def phantom_maps(lesion: bool = False, spacing: float = 4.0) -> SodiumMaps:
    """The project's synthetic brain (seed 0) at ``spacing`` mm as sodium maps (cached per process)."""
    from monai_inr.data.phantom import make_subject

    return maps_from_subject(make_subject(0, spacing=spacing, lesion=lesion))


def tiny_config(**overrides):
    return get_preset("tiny", **overrides)


@functools.lru_cache(maxsize=8)
def tiny_simulation(n_spokes: int = 1900, decay: bool = False, snr=None, n_coils: int = 1, seed: int = 0,
                    lesion: bool = False):
    """A cached tiny-preset simulation of the 4 mm phantom (backend auto: finufft when installed, else pynufft)."""
    cfg = tiny_config(n_spokes=n_spokes, decay=decay, snr_wm=snr, n_coils=n_coils, backend="auto")
    return simulate_subject(phantom_maps(lesion), cfg, seed=seed)
