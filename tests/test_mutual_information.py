import math

import numpy as np
import pytest
import torch
from skimage.metrics import normalized_mutual_information as sk_nmi

from monai_inr.metrics import entropy, joint_histogram, mutual_information, normalized_mutual_information


def correlated(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random(n)
    b = np.sin(3 * a) + 0.2 * rng.standard_normal(n)
    return a.reshape(20, -1), b.reshape(20, -1)


def test_identity_equals_entropy():
    x = np.repeat(np.arange(32), 10) / 31.0  # 10 values in each of the 32 bins
    assert mutual_information(x, x, bins=32) == pytest.approx(math.log(32), abs=1e-12)
    a, _ = correlated()
    h = entropy(joint_histogram(a, a).sum(axis=1))
    assert mutual_information(a, a) == pytest.approx(h, abs=1e-12)


def test_binary_analytic_cases():
    a = np.tile([0.0, 0.0, 1.0, 1.0], 50)
    b = np.tile([0.0, 1.0, 0.0, 1.0], 50)  # exactly independent of a
    assert mutual_information(a, a, bins=2) == pytest.approx(math.log(2), abs=1e-12)  # nats
    assert mutual_information(a, 1 - a, bins=2) == pytest.approx(math.log(2), abs=1e-12)
    assert mutual_information(a, b, bins=2) == pytest.approx(0.0, abs=1e-12)
    assert normalized_mutual_information(a, b, bins=2) == pytest.approx(1.0, abs=1e-12)
    assert normalized_mutual_information(a, a, bins=2) == pytest.approx(2.0, abs=1e-12)


def test_independent_is_near_zero():
    rng = np.random.default_rng(1)
    a, b = rng.random(200_000), rng.random(200_000)
    mi = mutual_information(a, b, bins=32)
    assert 0 <= mi < 0.01  # plug-in bias ~ 31**2 / (2 N) = 0.0024 nats


def test_nmi_matches_skimage_and_mi_relation():
    a, b = correlated()
    ours = normalized_mutual_information(a, b, bins=32)
    assert ours == pytest.approx(sk_nmi(a, b, bins=32), abs=1e-10)
    h_ab = entropy(joint_histogram(a, b, bins=32))
    assert mutual_information(a, b, bins=32) == pytest.approx(h_ab * (ours - 1), abs=1e-10)
    assert mutual_information(a, b) > 0.3


def test_properties_mask_range_torch():
    a, b = correlated(seed=2)
    mi = mutual_information(a, b)
    assert mutual_information(b, a) == pytest.approx(mi, abs=1e-12)
    assert mutual_information(a, b) == mi  # deterministic
    assert mutual_information(torch.from_numpy(a), torch.from_numpy(b)) == mi
    assert mutual_information(2 * a + 3, b) == pytest.approx(mi, abs=1e-3)  # own ranges: affine-invariant
    mask = a > 0.3
    assert mutual_information(a, b, mask=mask) == pytest.approx(mutual_information(a[mask], b[mask]), abs=1e-12)
    # a common value range, values outside clipped into the edge bins (every voxel counted)
    p = joint_histogram(a, b, value_range=(0.0, 0.5))
    assert p.sum() == pytest.approx(1.0) and p.shape == (32, 32)
    assert p[-1].sum() == pytest.approx(np.mean(a >= 0.5 - 1 / 64))
    p2 = joint_histogram(a, b, bins=(8, 16), value_range=((0, 1), (-2, 2)))
    assert p2.shape == (8, 16)


def test_constant_and_errors():
    a, b = correlated(seed=3)
    c = np.full_like(a, 0.7)
    assert mutual_information(c, b) == 0.0
    assert normalized_mutual_information(c, c) == 2.0
    with pytest.raises(ValueError, match="same shape"):
        mutual_information(a, b[:-1])
    with pytest.raises(ValueError, match="bins"):
        mutual_information(a, b, bins=0)
    with pytest.raises(ValueError, match="empty mask"):
        mutual_information(a, b, mask=np.zeros(a.shape))
    with pytest.raises(ValueError, match="value_range"):
        mutual_information(a, b, value_range=(1.0, 0.0))
