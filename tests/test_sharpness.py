"""PSI and LPC-SI validation (environment notes section 4): blur sweeps, constant images, symmetries, ranges, cubic
up-sampling."""

import glob
import os

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from monai_inr.metrics import lpc_si, psi
from monai_inr.transforms.functional import resize_cell_centred

SIGMAS = (0.0, 0.5, 1.0, 2.0, 4.0)


@pytest.fixture(scope="module")
def slices():
    """A real brain slice (nilearn's MNI152 T1 template, axial, 1 mm) at 197 x 233 and resampled to an ArRFR-like
    112 x 133 grid, plus a synthetic sodium-like image (smooth blobs with CSF-like bright ellipses)."""
    import nilearn.datasets

    path = glob.glob(os.path.join(os.path.dirname(nilearn.datasets.__file__), "data",
                                  "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"))[0]
    vol = np.asarray(nib.load(path).dataobj, dtype=np.float64)
    sl = vol[:, :, 95] / vol.max()
    small = np.clip(resize_cell_centred(sl, (112, 133), order=1, anti_alias=True), 0, 1)
    yy, xx = np.mgrid[:64, :72]
    head = ((yy - 32) / 28) ** 2 + ((xx - 36) / 32) ** 2 < 1
    csf = ((yy - 30) / 8) ** 2 + ((xx - 30) / 4) ** 2 < 1
    csf |= ((yy - 30) / 8) ** 2 + ((xx - 42) / 4) ** 2 < 1
    synth = np.where(head, 0.4, 0.0) + np.where(csf, 0.5, 0.0)
    synth = ndimage.gaussian_filter(synth, 0.7)
    return {"mni197": sl, "mni112": small, "synthetic": synth}


@pytest.mark.parametrize("name", ["mni197", "mni112", "synthetic"])
def test_blur_sweep_is_strictly_decreasing(slices, name):
    img = slices[name]
    blurred = [ndimage.gaussian_filter(img, s) if s else img for s in SIGMAS]
    p = [psi(b) for b in blurred]
    q = [lpc_si(b) for b in blurred]
    assert all(a > b for a, b in zip(p, p[1:])), p
    assert all(a > b for a, b in zip(q, q[1:])), q


def test_constant_images_have_a_defined_value():
    for value in (0.0, 0.3, 7.0):
        img = np.full((40, 50), value)
        assert psi(img) == 0.0 and lpc_si(img) == 0.0
    with pytest.raises(ValueError):
        psi(np.zeros((2, 40)))
    with pytest.raises(ValueError):
        lpc_si(np.full((10, 10), np.nan))
    with pytest.raises(ValueError):
        psi(np.zeros((4, 4, 4)))


def test_flips_transposition_and_intensity_scaling(slices):
    img = slices["mni112"]
    p, q = psi(img), lpc_si(img)
    for t in (img[::-1], img[:, ::-1], img.T):
        assert psi(t) == pytest.approx(p, rel=0.15)  # the 32 x 32 block grid moves with the image
        assert lpc_si(t) == pytest.approx(q, abs=1e-3)
    # PSI is (up to ties) invariant to positive affine intensity changes; LPC-SI's constant C is in 8-bit units
    # (data_range)
    assert psi(3 * img + 1) == pytest.approx(p, rel=0.05)  # equal up to floating-point tie-breaking in the thinning
    assert lpc_si(3 * img, data_range=3.0) == pytest.approx(q, abs=1e-9)
    half = lpc_si(0.5 * img, data_range=1.0)
    assert 0.9 * q < half < q


def test_plausible_ranges_for_brain_slices(slices):
    # published brain-MR values (ArSSR / ArRFR tables): PSI about 0.10-0.34, LPC-SI about 0.87-0.97
    for name in ("mni197", "mni112"):
        assert 0.10 < psi(slices[name]) < 0.34
        assert 0.87 < lpc_si(slices[name]) < 0.99


def test_cubic_upsampling_scores_below_the_source(slices):
    img = slices["mni112"][20:80, 20:90]
    p0, q0 = psi(img), lpc_si(img)
    ps, qs = [], []
    for f in (2, 3, 4):
        up = np.clip(resize_cell_centred(img, tuple(n * f for n in img.shape), order=3), 0, 1)
        ps.append(psi(up))
        qs.append(lpc_si(up))
    assert p0 > ps[0] > ps[1] > ps[2]
    assert q0 > qs[0] > qs[1] > qs[2]


def test_details_and_maps(slices):
    value, details = psi(slices["synthetic"], return_details=True)
    assert details["edges"] > 0 and np.all(details["widths"] > 0) and value == pytest.approx(
        np.mean(details["blocks"][: max(1, int(np.ceil(0.22 * details["blocks"].size)))])
    )
    v, smap = lpc_si(slices["synthetic"], return_map=True)
    assert smap.shape == slices["synthetic"].shape and np.all(smap <= 1) and v <= smap.max() + 1e-9
