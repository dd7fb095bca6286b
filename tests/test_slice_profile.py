"""The thick-slice forward model of the multi-contrast INR fit: profile offsets, the integrating training inferer,
and each contrast's slice-profile vector in the shared frame."""

import math

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_inr.data.coordinates import ContrastPair
from monai_inr.engines.prepare_batch import PrepareBatchCoordinates
from monai_inr.inferers import SliceProfileInferer, profile_offsets


def test_offsets_are_stratified_over_the_profile():
    g = torch.Generator().manual_seed(0)
    box = profile_offsets("box", 4, g)
    assert box.shape == (4,) and all(-0.5 + k / 4 <= float(o) < -0.5 + (k + 1) / 4 for k, o in enumerate(box))
    many = torch.cat([profile_offsets("gaussian", 8, g) for _ in range(2000)]).double()
    sigma = 1 / (2 * math.sqrt(2 * math.log(2)))  # FWHM of one slice thickness
    assert abs(float(many.mean())) < 0.01 and abs(float(many.std()) - sigma) < 0.02 and many.abs().max() <= 3 * sigma
    with pytest.raises(ValueError, match="slice profile"):
        profile_offsets("triangle", 4)


def test_the_inferer_averages_the_network_over_each_samples_profile():
    """For a network linear in z plus a quadratic, the box average over a unit slice is known in closed form."""
    net = lambda x: torch.stack([x[:, 2] ** 2, x[:, 0]], dim=1)  # noqa: E731
    x = torch.tensor([[0.3, 0.0, 0.0], [0.1, 0.0, 0.5]])
    profile = torch.tensor([[0.0, 0.0, 0.4], [0.0, 0.0, 0.0]])  # sample 0 has a 0.4-thick slice along z
    out = SliceProfileInferer("box", samples=4000, seed=1)(x, net, profile=profile)
    # E[(z + 0.4 u)^2], u ~ U(-1/2, 1/2) = z^2 + 0.16 / 12
    np.testing.assert_allclose(out[:, 0].numpy(), [0.16 / 12, 0.25], atol=2e-4)
    np.testing.assert_allclose(out[:, 1].numpy(), [0.3, 0.1], atol=1e-6)  # in-plane coordinates untouched
    assert torch.equal(SliceProfileInferer("box", samples=0)(x, net, profile=profile), net(x))  # slice-centre model
    assert torch.equal(SliceProfileInferer("box", samples=4)(x, net), net(x))
    assert torch.equal(SliceProfileInferer("none", samples=4)(x, net, profile=profile), net(x))  # point-sampled data


def test_profile_vectors_span_one_slice_along_each_contrasts_thick_axis(tmp_path):
    """Axial 2x2x4 mm and coronal 2x4x2 mm contrasts of one 32^3 field: each vector is 4 mm along its own axis."""
    rng = np.random.default_rng(0)
    a1, a2 = np.diag([2.0, 2.0, 4.0, 1.0]), np.diag([2.0, 4.0, 2.0, 1.0])
    a1[:3, 3] = a2[:3, 3] = -30.0
    for name, shape, a in (("t1", (32, 32, 16), a1), ("t2", (32, 16, 32), a2)):
        nib.save(nib.Nifti1Image(rng.random(shape).astype(np.float32), a), str(tmp_path / f"{name}.nii.gz"))
    pair = ContrastPair(tmp_path / "t1.nii.gz", tmp_path / "t2.nii.gz")
    v1, v2 = pair.slice_profile_vectors()
    world = lambda v: pair.frame.normalized_to_world(np.stack([np.zeros(3), v]))  # noqa: E731
    np.testing.assert_allclose(np.diff(world(v1), axis=0)[0], [0, 0, 4.0], atol=1e-6)
    np.testing.assert_allclose(np.diff(world(v2), axis=0)[0], [0, 4.0, 0], atol=1e-6)
    ds = pair.dataset(slice_profile=True)
    batch = ds[torch.tensor([0, len(ds) - 1])]
    np.testing.assert_allclose(batch["profile"].numpy(), np.stack([v1, v2]), atol=1e-6)
    x, y, args, kwargs = PrepareBatchCoordinates()(batch)
    assert torch.equal(kwargs["profile"], batch["profile"]) and args == ()
    assert "profile" not in pair.dataset()[torch.tensor([0])]
