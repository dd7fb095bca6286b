import numpy as np
import pytest

from preprocessing.trajectory import (
    GAMMA_BAR_NA23_HZ_PER_G,
    DAReadout,
    da_radial_trajectory,
    golden_means_directions,
    kmax_for_spacing,
    nyquist_spokes,
)

pytestmark = pytest.mark.xdist_group("preprocessing")  # shares the phantom/ANTs caches


def test_paper_readout_parameters():
    kmax = kmax_for_spacing((4.8572, 4.8572, 4.75))
    assert kmax == pytest.approx(1.0294, abs=1e-4)
    ro = DAReadout(kmax=kmax, p=0.4, gradient=0.215)
    assert ro.t0 == pytest.approx(1.70e-3, abs=0.01e-3)
    assert ro.duration == pytest.approx(9.99e-3, abs=0.02e-3)
    # formula of Nagel 2009: T_RO = t0 + (kmax^3 - k0^3) / (3 gamma G k0^2)
    g = GAMMA_BAR_NA23_HZ_PER_G * 0.215
    assert ro.duration == pytest.approx(ro.t0 + (kmax**3 - ro.k0**3) / (3 * g * ro.k0**2))


def test_readout_shape_continuous_and_bounded():
    ro = DAReadout(kmax=1.0, p=0.4, gradient=0.2)
    t = np.linspace(0, ro.duration, 2001)
    k = ro.k_of_t(t)
    assert k[0] == 0 and k[-1] == pytest.approx(1.0, rel=1e-9)
    assert np.all(np.diff(k) > 0)
    # constant gradient before t0, then dk/dt * k^2 constant (equal sample density per shell)
    before = t < ro.t0 * 0.99
    assert np.allclose(np.diff(k[before]) / np.diff(t[before]), ro.slope)
    after = t > ro.t0 * 1.01
    rate = np.gradient(k, t)[after] * k[after] ** 2
    assert np.allclose(rate, ro.slope * ro.k0**2, rtol=1e-3)
    assert abs(ro.k_of_t(ro.t0 - 1e-9) - ro.k_of_t(ro.t0 + 1e-9)) < 1e-6


def test_trajectory_layout():
    tr = da_radial_trajectory(300, 50, kmax=0.8, te=0.25e-3)
    assert tr.k.shape == (300, 50, 3) and tr.k.dtype == np.float32
    r = np.linalg.norm(tr.k, axis=-1)
    assert r.max() <= 0.8 * (1 + 1e-6) and np.allclose(r[:, -1], 0.8, rtol=1e-6)
    assert np.allclose(r[:, 0], 0)
    assert tr.times[0] == pytest.approx(0.25e-3) and np.allclose(np.diff(tr.times), tr.dwell)
    assert tr.times[-1] == pytest.approx(0.25e-3 + tr.readout.duration)


def test_golden_means_cover_the_sphere_uniformly():
    d = golden_means_directions(4000)
    assert np.allclose(np.linalg.norm(d, axis=1), 1)
    assert np.abs(d.mean(0)).max() < 0.01  # full sphere, no hemisphere bias
    assert np.allclose((d**2).mean(0), 1 / 3, atol=0.01)  # isotropic second moments
    # any prefix is also well spread (golden means are incremental)
    assert np.abs(golden_means_directions(500).mean(0)).max() < 0.03


def test_nyquist_spokes():
    assert nyquist_spokes(1 / (2 * 0.486), 48 * 4.86) == pytest.approx(7238, abs=3)
    assert nyquist_spokes(kmax_for_spacing(4.8572), 56 * 4.8572) == pytest.approx(9852, abs=3)


def test_invalid():
    with pytest.raises(ValueError):
        DAReadout(kmax=1.0, p=0.0)
    with pytest.raises(ValueError):
        da_radial_trajectory(10, 1, kmax=1.0)
