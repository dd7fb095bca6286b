import torch

from monai_inr.engines.prepare_batch import PrepareBatchOutputGrid


def test_output_shape_follows_the_label():
    batch = {"image": torch.rand(1, 1, 4, 5, 6), "label": torch.rand(1, 1, 8, 10, 13)}
    image, label, args, kwargs = PrepareBatchOutputGrid()(batch, device="cpu")
    assert image.shape == (1, 1, 4, 5, 6) and label.shape == (1, 1, 8, 10, 13)
    assert args == () and kwargs == {"output_shape": (8, 10, 13)}


def test_no_label_passes_nothing_extra():
    image, label, args, kwargs = PrepareBatchOutputGrid()({"image": torch.rand(1, 1, 4, 4, 4)})
    assert label is None and kwargs == {}
