import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_inr.transforms.intensity import MinMaxNormalize, MinMaxNormalized, RestoreIntensityd


def test_min_max_round_trip_and_meta():
    img = MetaTensor(torch.rand(1, 4, 5, 6) * 300 + 20, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])))
    d = MinMaxNormalized(keys="image")({"image": img.clone()})
    out = d["image"]
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    np.testing.assert_allclose(out.affine.numpy(), img.affine.numpy())
    d["pred"] = out.clone()
    restored = RestoreIntensityd(keys="pred", source_key="image")(d)["pred"]
    np.testing.assert_allclose(restored.numpy(), img.numpy(), rtol=1e-5)


def test_constant_image_is_rejected():
    with pytest.raises(ValueError, match="constant"):
        MinMaxNormalize()(torch.ones(1, 3, 3, 3))


def test_restore_needs_recorded_range():
    with pytest.raises(KeyError, match="no recorded intensity range"):
        RestoreIntensityd(keys="pred")({"image": MetaTensor(torch.rand(1, 2, 2, 2)), "pred": torch.rand(1, 2, 2, 2)})
