"""LIIF local implicit function (Chen et al. 2021): unfolding, exact first-layer factorisation, local ensemble."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from monai_inr import coords
from monai_inr.networks.decoders import LIIFDecoder, unfold_features


def _grid(shape, b=1, dtype=torch.float64):
    g = coords.normalized_grid(shape, dtype=dtype)[None].expand(b, -1, -1)
    cell = coords.cell_size(shape, dtype=dtype).expand(b, g.shape[1], len(shape))
    return g, cell


def test_unfold_matches_torch_unfold_and_3d_kernel_layout():
    x = torch.randn(2, 3, 5, 7)
    assert torch.equal(unfold_features(x), F.unfold(x, 3, padding=1).reshape(2, 27, 5, 7))
    x3 = torch.randn(1, 2, 4, 5, 3, dtype=torch.float64)
    w = torch.randn(4, 2 * 27, dtype=torch.float64)
    direct = torch.einsum("oc,bcxyz->boxyz", w, unfold_features(x3))
    conv = F.conv3d(x3, w.reshape(4, 2, 3, 3, 3), padding=1)
    assert torch.allclose(direct, conv)


@pytest.mark.parametrize(
    "dims, unfold, ensemble, cell",
    [(2, True, True, True), (2, False, True, False), (2, True, False, True), (3, True, True, True)],
)
def test_factorised_first_layer_equals_explicit_unfolding(dims, unfold, ensemble, cell):
    torch.manual_seed(0)
    dec = LIIFDecoder(3, 2, 8, 4, spatial_dims=dims, feat_unfold=unfold, local_ensemble=ensemble, cell_decode=cell)
    dec = dec.double()
    shape = (4, 6) if dims == 2 else (3, 4, 5)
    feats = torch.randn(2, 3, *shape, dtype=torch.float64)
    q = torch.rand(2, 40, dims, dtype=torch.float64) * 2 - 1
    c = torch.full((2, 40, dims), 0.1, dtype=torch.float64) if cell else None
    assert torch.allclose(dec(feats, q, c), dec.forward_unfolded(feats, q, c), atol=1e-12)
    assert dec(feats, q, c).shape == (2, 40, 2)


def test_paper_decoder_sizes():
    dec = LIIFDecoder(256, 1, 128, 5)
    assert dec.first.in_features == 9 * 256 + 2 + 2 == 2308
    linear = [m for m in dec.modules() if isinstance(m, torch.nn.Linear)]
    sizes = [(m.in_features, m.out_features) for m in linear]
    assert sizes == [(2308, 128), (128, 128), (128, 128), (128, 128), (128, 1)]
    assert sum(isinstance(m, torch.nn.ReLU) for m in dec.modules()) == 4


def test_relative_coordinates_on_a_rectangular_grid():
    dec = LIIFDecoder(1, 1, 4, 2, local_ensemble=False, cell_decode=False).double()
    latent = torch.zeros(1, 4, 2, 4, dtype=torch.float64)
    q = torch.tensor([[[0.1, 0.3]]], dtype=torch.float64)
    rel = dec._blend(latent, q, None, lambda z, r, rc: r)
    # nearest latent centre (0.5, 0.25) on the 2 x 4 grid; LIIF scales the offset by the grid size per axis
    assert torch.allclose(rel, torch.tensor([[[(0.1 - 0.5) * 2, (0.3 - 0.25) * 4]]], dtype=torch.float64))


def test_local_ensemble_area_weights():
    torch.manual_seed(1)
    dec = LIIFDecoder(2, 1, 8, 3, cell_decode=False).double()
    latent = torch.randn(1, 8, 3, 4, dtype=torch.float64)
    # at an interior latent centre all weight goes to that latent (the three other rectangles have zero area); on the
    # last row/column the shifted queries are clamped into the same latent and LIIF's weights degenerate to 1/4 each
    centres, _ = _grid((3, 4))
    interior = (centres[0, :, 0] < 0.5) & (centres[0, :, 1] < 0.7)
    centres = centres[:, interior]
    near = dec.query(latent, centres)
    dec.local_ensemble = False
    assert torch.allclose(near, dec.query(latent, centres), atol=1e-9)
    dec.local_ensemble = True
    # a generic point: four predictions blended with normalised diagonal-opposite areas
    q = torch.tensor([[[0.13, -0.41]]], dtype=torch.float64)
    parts = []
    out = dec._blend(latent, q, None, lambda z, r, rc: (parts.append((z[..., :1].clone(), r.clone())), z[..., :1])[1])
    areas = [torch.prod(r.abs(), -1, keepdim=True) for _, r in parts]
    total = sum(areas)
    manual = sum(parts[i][0] * areas[3 - i] / total for i in range(4))
    assert torch.allclose(out, manual)


def test_local_ensemble_is_continuous_across_latent_boundaries():
    torch.manual_seed(2)
    dec = LIIFDecoder(2, 1, 16, 3, cell_decode=False)
    feats = torch.randn(1, 2, 4, 4)
    boundary = 0.0  # between latent rows 1 and 2 of a 4-row grid
    q = torch.tensor([[[boundary - 1e-4, 0.1], [boundary + 1e-4, 0.1]]])
    with torch.no_grad():
        smooth = dec(feats, q)
        dec.local_ensemble = False
        jump = dec(feats, q)
    assert abs(float(smooth[0, 0] - smooth[0, 1])) < 1e-2
    assert abs(float(jump[0, 0] - jump[0, 1])) > 10 * abs(float(smooth[0, 0] - smooth[0, 1]))


def test_errors_and_gradients():
    dec = LIIFDecoder(3, 1, 8, 3)
    feats = torch.randn(1, 3, 5, 5, requires_grad=True)
    q, c = _grid((7, 7), dtype=torch.float32)
    with pytest.raises(ValueError, match="cell"):
        dec(feats, q)
    with pytest.raises(ValueError, match="feature map"):
        dec(torch.randn(1, 4, 5, 5), q, c)
    with pytest.raises(ValueError):
        LIIFDecoder(3, 1, 8, 1)
    dec(feats, q, c).sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = dec(feats.detach(), q, c)
    ref = dec(feats.detach(), q, c)
    assert torch.allclose(out.float(), ref, atol=0.1 * float(ref.abs().max()) + 1e-2)


def test_flops_per_query_counts_corners():
    dec = LIIFDecoder(4, 1, 8, 3)
    n_corners = len(list(itertools.product((-1, 1), repeat=2)))
    assert dec.flops_per_query() == n_corners * (2 * (8 * 8 + 8 * 1) + 2 * 8 * 4)
