import numpy as np
import pytest

from preprocessing.rigid import (
    euler_xyz_deg,
    lps_to_ras_matrix,
    random_rigid,
    rigid_errors,
    rigid_matrix,
    rotation_angle_deg,
    rotation_matrix,
)

pytestmark = pytest.mark.xdist_group("preprocessing")  # shares the phantom/ANTs caches


def test_rigid_matrix_round_trip():
    m = rigid_matrix((5.0, -3.0, 8.0), (1.0, 2.0, -3.0), center_mm=(10.0, 0.0, -5.0))
    assert np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3))
    assert np.allclose(euler_xyz_deg(m), (5.0, -3.0, 8.0))
    c = np.array([10.0, 0.0, -5.0])
    assert np.allclose(m[:3, :3] @ c + m[:3, 3], c + [1, 2, -3])  # the centre only translates
    assert rotation_angle_deg(rotation_matrix((1, 1, 0), 7.5)) == pytest.approx(7.5)


def test_random_rigid_within_limits():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m, p = random_rigid(rng, 10.0, 10.0, center_mm=(1, 2, 3))
        assert rotation_angle_deg(m) <= 10 + 1e-9 and np.linalg.norm(p["translation_mm"]) <= 10 + 1e-9


def test_errors():
    t = rigid_matrix((10, 0, 0), (10, 0, 0))
    e = rigid_matrix((10.5, 0, 0), (10, 0.6, 0))
    err = rigid_errors(e, t, points_mm=np.zeros((1, 3)))
    assert err["rotation_error_deg"] == pytest.approx(0.5, abs=1e-6)
    assert err["translation_error_mm"] == pytest.approx(0.6, abs=1e-6)
    assert rigid_errors(t, t)["rotation_error_deg"] == pytest.approx(0, abs=1e-6)


def test_lps_ras_conversion_is_an_involution():
    m = rigid_matrix((3, 4, 5), (6, 7, 8))
    assert np.allclose(lps_to_ras_matrix(lps_to_ras_matrix(m)), m)
    p_ras = np.array([10.0, -20.0, 30.0, 1.0])
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    assert np.allclose(lps_to_ras_matrix(m) @ p_ras, flip @ (m @ (flip @ p_ras)))
