"""Masked k-space loss (Dual-ArbNet eq. 5): both mask conventions, distances, complex channels, the full objective."""

import pytest
import torch

from monai_inr.losses import KSpaceLoss, L1KSpaceLoss, kspace_mask
from monai_inr.transforms.functional import centred_fft, centred_ifft, kspace_crop_slice


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("shape, lr", [((16, 16), (8, 8)), ((15, 12), (5, 4)), ((9, 10), (9, 10))])
def test_masks_follow_the_kspace_crop_block(shape, lr):
    paper = kspace_mask(shape, lr, "paper")
    code = kspace_mask(shape, lr, "code")
    block = tuple(kspace_crop_slice(n, m) for n, m in zip(shape, lr))
    assert paper[block].min() == 1 and paper.sum() == lr[0] * lr[1]
    assert torch.equal(paper + code, torch.ones(shape))
    assert torch.equal(kspace_mask(shape, lr, "none"), torch.ones(shape))
    with pytest.raises(ValueError):
        kspace_mask(shape, lr, "outer")


def _as_channels(z):
    return torch.cat([z.real, z.imag], dim=1)


def test_paper_mask_sees_measured_frequencies_code_mask_the_missing_ones():
    """A perturbation made only of frequencies outside the LR block is invisible to the paper's mask, one made only of
    frequencies inside it is invisible to the code's mask (complex images: no Hermitian mirror terms)."""
    torch.manual_seed(0)
    shape, lr = (16, 16), (8, 8)
    hr = torch.complex(torch.rand(2, 1, *shape), torch.rand(2, 1, *shape))
    k = centred_fft(torch.randn(2, 1, *shape, dtype=torch.complex64), (-2, -1))
    inside = kspace_mask(shape, lr, "paper").to(k.dtype)
    low = centred_ifft(k * inside, (-2, -1))
    high = centred_ifft(k * (1 - inside), (-2, -1))
    paper = KSpaceLoss(lr, "paper", complex_channels=True)
    code = KSpaceLoss(lr, "code", complex_channels=True)
    assert paper(_as_channels(hr + high), _as_channels(hr)) < 1e-10
    assert code(_as_channels(hr + high), _as_channels(hr)) > 0.1
    assert code(_as_channels(hr + low), _as_channels(hr)) < 1e-10
    assert paper(_as_channels(hr + low), _as_channels(hr)) > 0.1


def test_unmasked_l2_is_the_mse_by_parseval_and_l1_distance():
    torch.manual_seed(1)
    a, b = torch.rand(3, 2, 10, 12), torch.rand(3, 2, 10, 12)
    assert torch.allclose(KSpaceLoss(mask="none")(a, b), ((a - b) ** 2).mean(), rtol=1e-5)
    k = centred_fft((a - b).to(torch.complex64), (-2, -1)) * kspace_mask((10, 12), (4, 6), "code")
    assert torch.allclose(KSpaceLoss((4, 6), "code", "l1")(a, b), k.abs().mean(), rtol=1e-5)
    per = KSpaceLoss((4, 6), reduction="none")(a, b)
    assert per.shape == (3, 2)


def test_complex_channels_pair_real_and_imaginary():
    torch.manual_seed(2)
    a, b = torch.rand(2, 2, 8, 8), torch.rand(2, 2, 8, 8)
    za, zb = torch.complex(a[:, :1], a[:, 1:]), torch.complex(b[:, :1], b[:, 1:])
    loss = KSpaceLoss(4, complex_channels=True)
    expected = (centred_fft(za - zb, (-2, -1)) * kspace_mask((8, 8), (4, 4))).abs().pow(2).mean()
    assert torch.allclose(loss(a, b), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="channel pairs"):
        loss(a[:, :1].expand(2, 3, 8, 8).contiguous(), b[:, :1].expand(2, 3, 8, 8).contiguous())


def test_full_objective_and_errors():
    torch.manual_seed(3)
    a, b = torch.rand(2, 1, 16, 16, requires_grad=True), torch.rand(2, 1, 16, 16)
    full = L1KSpaceLoss(kspace_weight=0.05, lr_shape=(8, 8))
    expected = torch.nn.functional.l1_loss(a, b) + 0.05 * KSpaceLoss((8, 8))(a, b)
    value = full(a, b)
    assert torch.allclose(value, expected)
    value.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    assert torch.allclose(L1KSpaceLoss(kspace_weight=0.0)(a, b), torch.nn.functional.l1_loss(a, b))
    with pytest.raises(ValueError, match="same shape"):
        KSpaceLoss(8)(a, b[..., :8])
    with pytest.raises(ValueError, match="LR shape"):
        KSpaceLoss()(a, b)
    with pytest.raises(ValueError):
        KSpaceLoss(8, distance="l3")
