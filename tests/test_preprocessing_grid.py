import numpy as np
import pytest

from monai_inr.coords import voxel_to_world
from preprocessing.grid import (
    PAPER_SHAPE,
    ReconGrid,
    fourier_resample,
    nrmse,
    paper_grid,
    resample_volume,
    upsampled_affine,
)

pytestmark = pytest.mark.xdist_group("preprocessing")  # shares the phantom/ANTs caches


def test_paper_grid_geometry():
    g = paper_grid(isocenter_mm=(1.0, -2.0, 3.0))
    assert g.shape == PAPER_SHAPE == (56, 56, 38)
    assert np.allclose(g.fov_mm, [272.0, 272.0, 180.5], atol=0.01)
    assert np.allclose(voxel_to_world(np.array([28.0, 28.0, 19.0]), g.affine), [1, -2, 3])  # N//2 at the isocentre
    assert g.kmax == pytest.approx(1 / (2 * 0.48572))
    up = upsampled_affine(g.affine, g.shape)
    assert np.allclose(np.linalg.norm(up[:3, :3], axis=0), [2.4286, 2.4286, 2.375])
    assert np.allclose(up[:3, 3], g.affine[:3, 3] - np.array([4.8572, 4.8572, 4.75]) / 4)


def test_refined_grid_nests():
    g = ReconGrid((10, 9, 8), (4.0, 4.0, 5.0), isocenter_mm=(5.0, 0.0, -3.0))
    f = g.refined(2)
    # every coarse voxel centre is a fine voxel centre (index 2n + (N % 2))
    n = np.array([3.0, 4.0, 5.0])
    m = 2 * n + np.array([s % 2 for s in g.shape])
    assert np.allclose(voxel_to_world(n, g.affine), voxel_to_world(m, f.affine))
    expected = 2 * np.pi * np.array([[0.5 * 0.2, 0.25 * 0.2, 0.1 * 0.25]])
    assert np.allclose(f.omega(np.array([[0.5, 0.25, 0.1]])), expected)


def test_fourier_resample_is_exact_for_band_limited_images():
    g = ReconGrid((12, 12, 10), (6.0, 6.0, 6.0))
    f = g.refined(2)
    pos = [np.arange(n) - n // 2 for n in f.shape]
    x, y, z = np.meshgrid(*pos, indexing="ij")
    # a low-frequency cosine (2 cycles per FOV) is represented on both grids
    fine = 1 + 0.5 * np.cos(2 * np.pi * 2 * x / f.shape[0]) * np.cos(2 * np.pi * y / f.shape[1])
    coarse = fourier_resample(fine, f, g)
    xc, yc, _ = np.meshgrid(*[np.arange(n) - n // 2 for n in g.shape], indexing="ij")
    expected = 1 + 0.5 * np.cos(2 * np.pi * 2 * xc / g.shape[0]) * np.cos(2 * np.pi * yc / g.shape[1])
    assert np.allclose(coarse, expected, atol=1e-5)
    assert np.allclose(fourier_resample(fine, f, g, support="sphere"), expected, atol=1e-5)
    with pytest.raises(ValueError):
        fourier_resample(fine, f, g, support="cube")


def test_resample_volume_through_world_coordinates():
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    aff[:3, 3] = [-10, -12, -8]
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in (11, 13, 9)], indexing="ij"), -1)
    xyz = ijk @ aff[:3, :3].T + aff[:3, 3]
    vol = (xyz @ np.array([0.3, -0.2, 0.5]) + 7).astype(np.float32)  # linear in world: interpolated exactly
    out_aff = np.diag([3.0, 3.0, 3.0, 1.0])
    out_aff[:3, 3] = [-6, -6, -3]
    out = resample_volume(vol, aff, (4, 5, 3), out_aff, order=1, antialias=False)
    o = np.stack(np.meshgrid(*[np.arange(n) for n in (4, 5, 3)], indexing="ij"), -1)
    o = o @ out_aff[:3, :3].T + out_aff[:3, 3]
    assert np.allclose(out, o @ np.array([0.3, -0.2, 0.5]) + 7, atol=1e-4)


def test_nrmse_and_validation():
    a = np.ones((4, 4, 4))
    assert nrmse(a, a) == 0
    assert nrmse(1.1 * a, a) == pytest.approx(0.1)
    m = np.zeros_like(a, bool)
    m[0] = True
    b = a.copy()
    b[1:] = 5
    assert nrmse(b, a, m) == 0
    with pytest.raises(ValueError):
        ReconGrid((8, 8), (1.0, 1.0))
    with pytest.raises(ValueError):
        ReconGrid((8, 8, 8), (1.0, -1.0, 1.0))
    g = ReconGrid((8, 8, 8), (1.0, 1.0, 1.0))
    assert ReconGrid.from_dict(g.to_dict()) == g and g != g.refined(2)
