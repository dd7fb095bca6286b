"""Fourier features and the pure-PyTorch multiresolution hash grid."""

import itertools
import math

import pytest
import torch

from monai_inr.networks.encodings import _PRIMES, FourierFeatures, HashGridEncoding, fixed_resolution, get_encoding


def test_fourier_features_formula_and_buffer():
    ff = FourierFeatures(in_features=3, num_frequencies=16, scale=4.0, seed=12)
    assert ff.out_features == 32
    assert "B" in ff.state_dict() and not any(p is ff.B for p in ff.parameters())
    x = torch.rand(7, 3) * 2 - 1
    proj = 2 * math.pi * x @ ff.B.T
    torch.testing.assert_close(ff(x), torch.cat([torch.sin(proj), torch.cos(proj)], -1))
    # same seed -> same matrix, private generator (global RNG untouched)
    state = torch.random.get_rng_state()
    torch.testing.assert_close(FourierFeatures(3, 16, 4.0, seed=12).B, ff.B)
    assert torch.equal(state, torch.random.get_rng_state())
    assert not torch.equal(FourierFeatures(3, 16, 4.0, seed=13).B, ff.B)
    # the draw has the requested standard deviation
    big = FourierFeatures(3, 4096, scale=4.0, seed=0)
    assert abs(float(big.B.std()) - 4.0) < 0.15
    # a checkpoint restores B exactly (it is not regenerated from the seed)
    other = FourierFeatures(3, 16, 4.0, seed=99)
    other.load_state_dict(ff.state_dict())
    torch.testing.assert_close(other(x), ff(x))
    assert FourierFeatures(3, 4, include_input=True)(x).shape == (7, 11)


def _naive_hash_grid(enc: HashGridEncoding, x: torch.Tensor) -> torch.Tensor:
    t = 2**enc.log2_table_size
    offsets = [sum(enc.level_sizes[:i]) for i in range(enc.num_levels)]
    out = []
    for lvl, res in enumerate(enc.resolutions):
        r = torch.tensor(res if isinstance(res, tuple) else (res,) * 3, dtype=torch.float32)  # per axis
        n = [int(v) + 1 for v in r]
        u = torch.minimum((x.clamp(-1, 1) + 1) / 2 * r, r - 1e-4)
        b = u.floor().long()
        f = u - b
        acc = torch.zeros(x.shape[0], enc.features_per_level)
        for c in itertools.product((0, 1), repeat=3):
            v = b + torch.tensor(c)
            if math.prod(n) <= t:
                i = v[:, 0] + v[:, 1] * n[0] + v[:, 2] * n[0] * n[1]
            else:
                i = ((v[:, 0] * _PRIMES[0]) ^ (v[:, 1] * _PRIMES[1]) ^ (v[:, 2] * _PRIMES[2])) % t
            w = torch.ones(x.shape[0])
            for a in range(3):
                w = w * (f[:, a] if c[a] else 1 - f[:, a])
            acc = acc + w[:, None] * enc.embeddings[offsets[lvl] + i]
        out.append(acc)
    return torch.stack(out, 1).reshape(x.shape[0], -1)


@pytest.mark.parametrize("features", [2, 3])
def test_hash_grid_matches_the_definition_forward_and_backward(features):
    torch.manual_seed(0)
    enc = HashGridEncoding(3, num_levels=5, features_per_level=features, log2_table_size=11, base_resolution=3,
                           max_resolution=40, init_scale=1.0)
    assert enc.resolutions[0] == 3 and enc.resolutions[-1] == 40
    assert enc.level_sizes[0] == 4**3 and enc.level_sizes[-1] == 2**11  # dense coarse levels, hashed fine ones
    x = torch.rand(64, 3) * 2.2 - 1.1  # includes points outside [-1, 1] (clamped)
    out, ref = enc(x), _naive_hash_grid(enc, x)
    assert out.shape == (64, 5 * features)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(out)
    (out * g).sum().backward()
    g1 = enc.embeddings.grad.clone()
    enc.embeddings.grad = None
    (ref * g).sum().backward()
    torch.testing.assert_close(g1, enc.embeddings.grad, atol=1e-5, rtol=1e-5)


def test_hash_grid_with_one_resolution_per_axis():
    torch.manual_seed(0)
    kw = dict(num_levels=4, features_per_level=2, log2_table_size=11, base_resolution=3, init_scale=1.0)
    enc = HashGridEncoding(3, max_resolution=[40, 24, 6], **kw)
    assert enc.resolutions[0] == (3, 3, 3) and enc.resolutions[-1] == (40, 24, 6)
    assert enc.level_sizes[0] == 4**3 and enc.level_sizes[-1] == 2**11
    x = torch.rand(64, 3) * 2.2 - 1.1
    torch.testing.assert_close(enc(x), _naive_hash_grid(enc, x), atol=1e-5, rtol=1e-5)
    # the finest level is linear between its vertices, which are 2 / 6 apart along axis 2 (not 2 / 40)
    fine = slice(3 * 2, 4 * 2)
    p = torch.tensor([[0.13, -0.41, -1.0 + 2 / 6], [0.13, -0.41, -1.0 + 4 / 6], [0.13, -0.41, -1.0 + 3 / 6]])
    out = enc(p)[:, fine]
    torch.testing.assert_close(out[2], (out[0] + out[1]) / 2, atol=1e-5, rtol=0)
    assert not torch.allclose(out[0], out[1])
    # one value per axis that are all equal is the isotropic grid
    iso, same = HashGridEncoding(3, max_resolution=24, **kw), HashGridEncoding(3, max_resolution=[24] * 3, **kw)
    same.load_state_dict(iso.state_dict())
    assert iso.resolutions == same.resolutions
    torch.testing.assert_close(same(x), iso(x), atol=0, rtol=0)
    with pytest.raises(ValueError, match="one per axis"):
        HashGridEncoding(3, max_resolution=[24, 24], **kw)


def test_fixed_resolution():
    assert fixed_resolution(64) == 64 and fixed_resolution([52, 52, 26]) == [52, 52, 26]
    assert fixed_resolution("auto") == 128 and fixed_resolution("AUTO", stand_in=32) == 32
    with pytest.raises(ValueError, match="'auto'"):
        fixed_resolution("fine")


def test_hash_grid_interpolates_and_keeps_leading_dims():
    enc = HashGridEncoding(3, num_levels=1, features_per_level=2, log2_table_size=12, base_resolution=4,
                           max_resolution=4, init_scale=1.0)
    # a table linear in the vertex position gives exactly linear features (trilinear interpolation)
    r = enc.resolutions[0]
    idx = torch.arange(enc.level_sizes[0])
    v0 = idx % (r + 1)
    with torch.no_grad():
        enc.embeddings[:, 0] = v0.float() / r * 2 - 1
        enc.embeddings[:, 1] = 0.5
    x = torch.rand(2, 5, 3) * 1.9 - 0.95
    out = enc(x)
    assert out.shape == (2, 5, 2)
    torch.testing.assert_close(out[..., 0], x[..., 0], atol=1e-4, rtol=0)
    torch.testing.assert_close(out[..., 1], torch.full((2, 5), 0.5))


def test_get_encoding_and_errors():
    assert isinstance(get_encoding("Fourier", num_frequencies=4), FourierFeatures)
    hg = get_encoding("hash_grid", num_levels=2, log2_table_size=8, base_resolution=4, max_resolution=8)
    assert isinstance(hg, HashGridEncoding)
    with pytest.raises(ValueError, match="unknown encoding"):
        get_encoding("siren")
    with pytest.raises(ValueError):
        HashGridEncoding(base_resolution=32, max_resolution=16)
    with pytest.raises(ValueError):
        FourierFeatures(scale=0.0)
    with pytest.raises(ValueError, match="3 components"):
        HashGridEncoding(num_levels=2, log2_table_size=8, base_resolution=4, max_resolution=8)(torch.zeros(4, 2))
