import numpy as np
import pytest

from _preprocessing_fixtures import phantom_maps, tiny_config, tiny_simulation
from monai_inr.coords import voxel_to_world
from preprocessing.grid import reference_image
from preprocessing.simulation import (
    PRESETS,
    coil_sensitivities,
    get_preset,
    resample_maps,
    simulate_subject,
    simulate_t2w,
)

pytestmark = pytest.mark.xdist_group("preprocessing")  # shares the phantom/ANTs caches


def test_presets():
    paper = PRESETS["paper"]
    assert tuple(paper.recon_shape) == (56, 56, 38) and tuple(paper.recon_spacing_mm) == (4.8572, 4.8572, 4.75)
    assert paper.n_samples == 200 and 20 <= paper.n_bins <= 30 and paper.te_s == pytest.approx(0.3e-3)
    assert get_preset("fast", n_spokes=123).n_spokes == 123
    assert get_preset("tiny", snr_wm=None).snr_wm is None
    with pytest.raises(ValueError):
        get_preset("huge")
    with pytest.raises(ValueError):
        get_preset("tiny", snr_wm=-1.0)


def test_simulated_raw_follows_the_layout_and_is_deterministic():
    a = tiny_simulation(n_spokes=1900, decay=True, snr=8.0)
    cfg = tiny_config(n_spokes=300, decay=True, snr_wm=8.0, backend="auto")
    b1, b2 = (simulate_subject(phantom_maps(), cfg, seed=0) for _ in range(2))
    assert np.array_equal(b1.raw.kspace, b2.raw.kspace) and np.array_equal(b1.t2w, b2.t2w)
    assert np.allclose(a.fixed_to_moving, b1.fixed_to_moving)  # motion drawn from the same seeded stream
    c = simulate_subject(phantom_maps(), cfg, seed=1)
    assert not np.allclose(c.raw.kspace, b1.raw.kspace)
    raw = a.raw
    assert raw.kspace.shape == (1900, 96) and raw.trajectory.shape == (1900, 96, 3)
    assert raw.times.shape == (96,) and raw.times[0] == pytest.approx(0.3e-3)
    meta = raw.meta
    assert meta["trajectory_units"] == "1/cm" and meta["grid"]["shape"] == [24, 24, 24]
    assert meta["trajectory"]["k0_per_cm"] == pytest.approx(0.4 * meta["trajectory"]["kmax_per_cm"])
    assert meta["simulation"]["n_time_bins"] == 8 and meta["simulation"]["seed"] == 0


def test_k_space_centre_is_the_total_sodium_signal():
    sim = tiny_simulation(n_spokes=1900, decay=False)
    total = float(sim.truth_fine.sum() * np.prod(sim.grid_fine.spacing_cm))  # mM cm^3
    assert np.allclose(sim.raw.kspace[:, 0], total, rtol=1e-3)  # every spoke starts at k = 0
    dec = tiny_simulation(n_spokes=1900, decay=True)
    # at TE = 0.3 ms the fast component (~60 % of tissue sodium, T2* ~ 3.5 ms) has lost ~8 %
    ratio = float(np.abs(dec.raw.kspace[:, 0]).mean()) / total
    assert 0.9 < ratio < 0.99


def test_truth_maps_and_grids():
    sim = tiny_simulation(n_spokes=1900)
    assert sim.grid_fine.shape == (48, 48, 48) and sim.recon_grid.shape == (24, 24, 24)
    # the reconstruction grid is centred on the head
    maps = phantom_maps()
    idx = np.argwhere(maps.mask)
    centre = voxel_to_world((idx.min(0) + idx.max(0)) / 2, maps.affine)
    assert np.allclose(sim.recon_grid.isocenter_mm, centre, atol=0.1)
    assert sim.truth_recon.shape == (24, 24, 24)
    assert np.allclose(sim.truth_recon, reference_image(sim.truth_fine, sim.grid_fine, sim.recon_grid), atol=1e-4)
    assert set(np.unique(sim.labels_fine)) <= {0, 1, 2, 3, 4, 5}
    mean = {lab: sim.truth_fine[sim.labels_fine == lab].mean() for lab in (1, 2, 3)}
    assert 30 < mean[3] < 50  # white matter ~40 mM
    assert mean[1] > mean[2] > mean[3]  # CSF (partial volume at 4.5 mm) > GM > WM


def test_resampled_maps_keep_the_total_sodium():
    maps = phantom_maps()
    sim = tiny_simulation(n_spokes=1900)
    fine = resample_maps(maps, sim.grid_fine)
    v_in = np.prod(np.linalg.norm(maps.affine[:3, :3], axis=0))
    v_out = np.prod(sim.grid_fine.spacing_mm)
    assert fine.concentration.sum() * v_out == pytest.approx(maps.concentration.sum() * v_in, rel=0.03)


def test_coil_sensitivities_have_unit_rss():
    g = tiny_simulation(n_spokes=1900).grid_fine
    s = coil_sensitivities(g, 6)
    assert s.shape == (6, *g.shape)
    assert np.allclose(np.sqrt((np.abs(s) ** 2).sum(0)), 1, atol=1e-5)
    assert np.abs(s[0]).std() > 0.05  # spatially varying


def test_t2w_motion_truth_and_no_motion():
    maps = phantom_maps()
    t2w, aff = simulate_t2w(maps.t2w, maps.affine, (2.0, 2.0, 4.0), None, None, None)
    assert np.allclose(np.linalg.norm(aff[:3, :3], axis=0), [2, 2, 4])
    sim = tiny_simulation(n_spokes=1900)
    motion = sim.fixed_to_moving
    assert abs(sim.motion["angle_deg"]) <= 10 and np.linalg.norm(sim.motion["translation_mm"]) <= 10
    # the T2w scanner sees the head point p of the sodium frame at motion @ p
    p = np.asarray(sim.recon_grid.isocenter_mm) + np.array([20.0, -10.0, 15.0])
    q = motion[:3, :3] @ p + motion[:3, 3]
    from scipy import ndimage

    from monai_inr.coords import world_to_voxel

    moved = ndimage.map_coordinates(sim.t2w, world_to_voxel(q[None], sim.t2w_affine).T, order=1)[0]
    still = ndimage.map_coordinates(t2w, world_to_voxel(p[None], aff).T, order=1)[0]
    assert moved == pytest.approx(still, rel=0.15)
