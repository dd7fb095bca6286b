import nibabel as nib
import numpy as np
import pytest
from _preprocessing_fixtures import phantom_maps, tiny_simulation

from monai_inr.coords import voxel_to_world
from monai_inr.errors import InputError
from preprocessing.reconstruction import ReconConfig, reconstruct
from preprocessing.registration import (
    RegistrationConfig,
    apply_rigid,
    check_overlap,
    from_ants,
    import_ants,
    register_rigid,
    to_ants,
    upsample2x,
)
from preprocessing.rigid import rigid_errors, rigid_matrix
from preprocessing.simulation import simulate_t2w

pytestmark = pytest.mark.xdist_group("preprocessing")  # shares the phantom/ANTs caches


def _world(shape, affine):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    return voxel_to_world(ijk.astype(float), affine).reshape(*shape, 3)


def test_upsample2x_is_the_exact_sub_grid():
    aff = np.diag([4.8572, 4.8572, 4.75, 1.0])
    aff[:3, 3] = [-130.0, -120.0, -80.0]
    shape = (14, 12, 10)
    f = lambda p: 0.01 * p[..., 0] ** 2 + 0.3 * p[..., 1] - 0.2 * p[..., 2] + 50  # noqa: E731 smooth, positive
    up, up_aff = upsample2x(f(_world(shape, aff)).astype(np.float32), aff)
    assert up.shape == (28, 24, 20)
    assert np.allclose(np.linalg.norm(up_aff[:3, :3], axis=0), [2.4286, 2.4286, 2.375])
    assert np.allclose(up_aff[:3, 3], aff[:3, 3] - np.array([4.8572, 4.8572, 4.75]) / 4)
    inner = (slice(6, -6),) * 3  # away from the mirrored boundary
    assert np.allclose(up[inner], f(_world(up.shape, up_aff))[inner], rtol=2e-3)
    # the field of view is unchanged: outer voxel edges coincide
    for a in (aff, up_aff):
        n = 14 if a is aff else 28
        assert np.allclose(voxel_to_world(np.array([-0.5, 0, 0]), a)[0], -130 - 4.8572 / 2)
        assert np.allclose(voxel_to_world(np.array([n - 0.5, 0, 0]), a)[0], -130 + 13.5 * 4.8572)


def test_ants_conversion_handles_lps_and_ras(tmp_path):
    ants = import_ants(deterministic=True)
    rng = np.random.default_rng(0)
    arr = rng.uniform(0, 1, (7, 8, 9)).astype(np.float32)
    aff = np.array([[0, -2.0, 0, 30], [1.5, 0, 0, -20], [0, 0, 3.0, 10], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(arr, aff), tmp_path / "x.nii.gz")
    from_file = ants.image_read(str(tmp_path / "x.nii.gz"))
    mine = to_ants(arr, aff, ants)
    assert np.allclose(from_file.origin, mine.origin, atol=1e-5)
    assert np.allclose(from_file.direction, mine.direction, atol=1e-6)
    assert np.allclose(from_file.spacing, mine.spacing) and np.allclose(from_file.numpy(), arr)
    back, back_aff = from_ants(mine)
    assert np.allclose(back, arr) and np.allclose(back_aff, aff, atol=1e-5)
    # ANTs (LPS) writes the RAS affine nibabel expects
    ants.image_write(mine, str(tmp_path / "y.nii.gz"))
    assert np.allclose(nib.load(tmp_path / "y.nii.gz").affine, aff, atol=1e-4)


@pytest.fixture(scope="module")
def sodium_fixed():
    """The realistic fixed image: the noisy (WM SNR 8) tiny reconstruction, 2x upsampled."""
    sim = tiny_simulation(n_spokes=1900, decay=True, snr=8.0)
    mag = reconstruct(sim.raw, sim.recon_grid, ReconConfig(backend="auto")).magnitude
    up, up_aff = upsample2x(mag, sim.recon_grid.affine)
    return up, up_aff, np.asarray(sim.recon_grid.isocenter_mm)


@pytest.mark.parametrize("angles, shift", [((10.0, 0.0, 0.0), (10.0, 0.0, 0.0)), ((-6.0, 5.0, 6.0), (-5.0, 6.0, -5.0))])
def test_recovers_ten_degrees_and_ten_millimetres(sodium_fixed, angles, shift):
    fixed, fixed_aff, centre = sodium_fixed
    maps = phantom_maps()
    truth = rigid_matrix(angles, shift, center_mm=centre)  # sodium world -> T2w scanner world
    t2w, t2w_aff = simulate_t2w(maps.t2w, maps.affine, (2.0, 2.0, 4.0), np.linalg.inv(truth),
                                np.random.default_rng(1), snr=40.0)
    res = register_rigid(fixed, fixed_aff, t2w, t2w_aff, RegistrationConfig())
    head = np.argwhere(fixed > 0.3 * fixed.max())
    err = rigid_errors(res.fixed_to_moving_ras, truth, voxel_to_world(head.astype(float), fixed_aff), centre)
    print(f"registration {angles} deg / {shift} mm: {err}")
    assert err["rotation_error_deg"] < 1.0
    assert err["translation_error_mm"] < 1.0 and err["max_displacement_error_mm"] < 1.5
    assert res.warped.shape == fixed.shape and res.warped.min() >= 0
    assert res.transform_file.exists()


def test_registration_is_deterministic(sodium_fixed):
    fixed, fixed_aff, centre = sodium_fixed
    maps = phantom_maps()
    truth = rigid_matrix((4, -3, 2), (3, -2, 4), center_mm=centre)
    t2w, t2w_aff = simulate_t2w(maps.t2w, maps.affine, (2.0, 2.0, 4.0), np.linalg.inv(truth), None, None)
    a = register_rigid(fixed, fixed_aff, t2w, t2w_aff)
    b = register_rigid(fixed, fixed_aff, t2w, t2w_aff)
    assert np.array_equal(a.fixed_to_moving_ras, b.fixed_to_moving_ras)
    assert np.array_equal(a.warped, b.warped)
    # resampling with the true transform reproduces the motion-free T2w on the fixed grid
    from preprocessing.grid import resample_volume

    direct, _ = apply_rigid(t2w, t2w_aff, fixed.shape, fixed_aff, truth)
    still = resample_volume(maps.t2w, maps.affine, fixed.shape, fixed_aff, order=1)
    assert np.corrcoef(direct.ravel(), still.ravel())[0, 1] > 0.97


def test_images_without_overlap_are_refused(sodium_fixed):
    fixed, fixed_aff, _ = sodium_fixed
    maps = phantom_maps()
    t2w, t2w_aff = simulate_t2w(maps.t2w, maps.affine, (2.0, 2.0, 4.0), None, None, None)
    far = t2w_aff.copy()
    far[:3, 3] += [400.0, 0, 0]
    with pytest.raises(InputError, match="t2w.nii.gz: the image does not overlap sodium.nii.gz"):
        check_overlap(fixed, fixed_aff, t2w, far, "sodium.nii.gz", "t2w.nii.gz")
    with pytest.raises(InputError, match="does not overlap"):
        register_rigid(fixed, fixed_aff, t2w, far, fixed_name="sodium.nii.gz", moving_name="t2w.nii.gz")
    assert check_overlap(fixed, fixed_aff, t2w, t2w_aff) > 0.5


def test_config_validation():
    with pytest.raises(ValueError):
        RegistrationConfig(transform="SyN")
    with pytest.raises(ValueError):
        RegistrationConfig(iterations=(10, 10), shrink_factors=(2,), smoothing_sigmas=(1,))
