import numpy as np
import pytest
import torch

from monai_inr import coords


def _oblique_affine():
    """A rotated, anisotropic, translated RAS affine (the hard case for geometry)."""
    theta = np.deg2rad(17.0)
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag([1.5, 0.8, 3.0])
    a[:3, 3] = [-90.0, 12.5, 40.0]
    return a


def _fov_corners_world(shape, affine):
    """World positions of the outer FOV edges along each axis (voxel -0.5 and N-0.5)."""
    lo = coords.voxel_to_world(np.full(3, -0.5), affine)
    hi = coords.voxel_to_world(np.asarray(shape, float) - 0.5, affine)
    return lo, hi


def test_normalized_grid_is_cell_centred():
    g = coords.normalized_grid((4, 2, 5), flatten=False)
    assert g.shape == (4, 2, 5, 3)
    np.testing.assert_allclose(g[:, 0, 0, 0].numpy(), [-0.75, -0.25, 0.25, 0.75])
    np.testing.assert_allclose(g[0, :, 0, 1].numpy(), [-0.5, 0.5])
    np.testing.assert_allclose(g[0, 0, :, 2].numpy(), [-0.8, -0.4, 0.0, 0.4, 0.8], atol=1e-7)
    # C-order flattening matches reshape of a volume
    flat = coords.normalized_grid((4, 2, 5))
    np.testing.assert_allclose(flat.reshape(4, 2, 5, 3).numpy(), g.numpy())
    np.testing.assert_allclose(coords.cell_size((4, 2, 5)).numpy(), [0.5, 1.0, 0.4])


def test_sample_features_recovers_voxels_and_respects_axis_order():
    vol = torch.randn(1, 2, 3, 4, 5)
    out = coords.sample_features(vol, coords.normalized_grid(vol.shape[2:])[None])
    np.testing.assert_allclose(out[0].T.reshape(2, 3, 4, 5).numpy(), vol[0].numpy(), atol=1e-6)
    # halfway between voxel (0,0,0) and (0,0,1) along the last (k) axis is the mean of both
    c = coords.voxel_to_normalized(torch.tensor([[[0.0, 0.0, 0.5]]]), (3, 4, 5))
    mid = coords.sample_features(vol, c)[0, 0]
    np.testing.assert_allclose(mid.numpy(), (vol[0, :, 0, 0, 0] + vol[0, :, 0, 0, 1]).numpy() / 2, atol=1e-6)


def test_voxel_world_normalized_round_trip():
    a = _oblique_affine()
    shape = (7, 9, 4)
    ijk = np.random.default_rng(0).uniform(-0.5, 8, size=(20, 3))
    xyz = coords.voxel_to_world(ijk, a)
    np.testing.assert_allclose(xyz, ijk @ a[:3, :3].T + a[:3, 3])
    np.testing.assert_allclose(coords.world_to_voxel(xyz, a), ijk, atol=1e-10)
    n = coords.world_to_normalized(xyz, shape, a)
    np.testing.assert_allclose(coords.normalized_to_world(n, shape, a), xyz, atol=1e-10)
    # normalised -1 and +1 are the outer FOV edges
    lo, hi = _fov_corners_world(shape, a)
    np.testing.assert_allclose(coords.normalized_to_world(np.array([-1.0, -1, -1]), shape, a), lo)
    np.testing.assert_allclose(coords.normalized_to_world(np.array([1.0, 1, 1]), shape, a), hi)


@pytest.mark.parametrize("scale", [2.0, 2.5, (1.0, 3.0, 4.0), 0.5])
def test_output_geometry_keeps_field_of_view(scale):
    a = _oblique_affine()
    shape = (10, 7, 9)
    out_shape, out_affine = coords.output_geometry(shape, a, scale=scale)
    s = coords.as_scale_tuple(scale, 3)
    assert out_shape == tuple(int(round(n * f)) for n, f in zip(shape, s))
    # same physical FOV edges, hence the same centre
    for x, y in zip(_fov_corners_world(shape, a), _fov_corners_world(out_shape, out_affine)):
        np.testing.assert_allclose(x, y, atol=1e-9)
    # spacing = spacing_in * N / round(N s)
    np.testing.assert_allclose(
        coords.spacing_from_affine(out_affine),
        coords.spacing_from_affine(a) * np.asarray(shape) / np.asarray(out_shape),
    )
    # direction cosines unchanged
    d_in = a[:3, :3] / coords.spacing_from_affine(a)
    d_out = out_affine[:3, :3] / coords.spacing_from_affine(out_affine)
    np.testing.assert_allclose(d_in, d_out, atol=1e-12)


def test_output_geometry_first_voxel_centre_position():
    a = np.diag([2.0, 2.0, 2.0, 1.0])
    a[:3, 3] = [10, 20, 30]
    out_shape, out_affine = coords.output_geometry((8, 8, 8), a, scale=2)
    assert out_shape == (16, 16, 16)
    # the input's first voxel spans 9..11 mm; the two output voxels inside it sit at 9.5 and 10.5 mm
    np.testing.assert_allclose(coords.voxel_to_world(np.zeros(3), out_affine), [9.5, 19.5, 29.5])
    np.testing.assert_allclose(coords.voxel_to_world(np.ones(3), out_affine), [10.5, 20.5, 30.5])


def test_output_geometry_target_spacing():
    a = np.diag([3.0, 1.0, 4.0, 1.0])
    out_shape, out_affine = coords.output_geometry((10, 30, 10), a, target_spacing=1.0)
    assert out_shape == (30, 30, 40)
    np.testing.assert_allclose(coords.spacing_from_affine(out_affine), [1.0, 1.0, 1.0])
    # a target spacing that does not divide the FOV is adjusted to keep the FOV exact
    out_shape, out_affine = coords.output_geometry((10, 10, 10), np.eye(4), target_spacing=0.3)
    assert out_shape == (33, 33, 33)
    np.testing.assert_allclose(coords.spacing_from_affine(out_affine), [10 / 33] * 3)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), (1.0, 2.0)])
def test_bad_scales_are_rejected(bad):
    with pytest.raises(ValueError, match="scale"):
        coords.output_geometry((4, 4, 4), np.eye(4), scale=bad)


def test_exactly_one_geometry_argument():
    with pytest.raises(ValueError, match="exactly one"):
        coords.output_geometry((4, 4, 4), np.eye(4))
    with pytest.raises(ValueError, match="exactly one"):
        coords.output_geometry((4, 4, 4), np.eye(4), scale=2, target_spacing=1)


def test_fraction_inside_fov_uses_world_positions():
    # a 10^3 grid at 1 mm and a 10^3 grid at 2 mm shifted by +10 mm in x: half of the small grid's centres lie in the
    # big grid's FOV along x (voxel edges -0.5 .. 19.5 mm of the 2 mm grid); a grid 100 mm away shares nothing
    small = np.eye(4)
    big = np.diag([2.0, 2.0, 2.0, 1.0])
    big[0, 3] = 10.0 + 0.5  # first voxel edge at x = 9.5 mm
    assert coords.fraction_inside_fov((10, 10, 10), small, (10, 10, 10), big) == pytest.approx(0.0)
    big[0, 3] = 5.0 + 0.5  # edges from x = 4.5 mm: small-grid centres x = 5..9 are inside
    assert coords.fraction_inside_fov((10, 10, 10), small, (10, 10, 10), big) == pytest.approx(0.5)
    far = np.eye(4)
    far[:3, 3] = 100.0
    assert coords.fraction_inside_fov((10, 10, 10), small, (10, 10, 10), far) == 0.0
    assert coords.fraction_inside_fov((10, 10, 10), small, (10, 10, 10), small) == 1.0


def test_cubic_bspline_prefilter_and_sampling_match_scipy():
    ndi = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    img = rng.random((9, 11, 5)).astype(np.float32)  # one axis shorter than the filter radius
    c = coords.cubic_bspline_prefilter(torch.from_numpy(img)[None, None])
    assert c.dtype == torch.float32 and c.shape == (1, 1, 9, 11, 5)
    np.testing.assert_allclose(c[0, 0].numpy(), ndi.spline_filter(img.astype(np.float64), 3, mode="reflect"),
                               atol=3e-4)
    # at the voxel centres the spline reproduces the voxels; in between it is scipy's cubic interpolant
    centres = coords.normalized_grid(img.shape)[None]
    np.testing.assert_allclose(coords.sample_cubic_bspline(c, centres)[0, :, 0].numpy().reshape(img.shape), img,
                               atol=3e-4)
    q = torch.rand(1, 300, 3) * 1.4 - 0.7
    idx = ((q[0].numpy() + 1) * np.array(img.shape) - 1) / 2
    expected = ndi.map_coordinates(img.astype(np.float64), idx.T, order=3, mode="reflect")
    np.testing.assert_allclose(coords.sample_cubic_bspline(c, q)[0, :, 0].numpy(), expected, atol=3e-4)
    # float32 also under bf16 autocast (the skip must not lose precision)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        again = coords.cubic_bspline_prefilter(torch.from_numpy(img)[None, None])
    assert again.dtype == torch.float32
    torch.testing.assert_close(again, c)
