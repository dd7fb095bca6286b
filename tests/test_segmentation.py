"""Downstream segmentation (Nexus-INR Table 5): metrics with the voxel spacing, empty classes, training, caching."""

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_inr.data.nexus import build_nexus_dataset
from monai_inr.evaluation.segmentation import (
    build_segmentation_network,
    load_segmentation_item,
    load_segmentation_network,
    segment,
    segmentation_input,
    segmentation_metrics,
    train_or_load_segmentation,
    train_segmentation,
)
from monai_inr.errors import InputError
from monai_inr.io import save_nifti

TINY = {"channels": (4, 8, 16), "strides": (2, 2), "num_res_units": 1}


def _boxes(shape=(24, 24, 24)):
    lab = np.zeros(shape, dtype=np.uint8)
    lab[6:18, 6:18, 6:18] = 2  # oedema shell
    lab[9:15, 9:15, 9:15] = 1  # tumour core
    return lab


def test_perfect_prediction_scores_dice_one_and_hd95_zero():
    lab = _boxes()
    m = segmentation_metrics(lab, lab, spacing=(1.5, 1.0, 2.0))
    for name in ("tumour_core", "oedema"):
        assert m[f"dice_{name}"] == pytest.approx(1.0)
        assert m[f"hd95_{name}"] == pytest.approx(0.0)
        assert m[f"miss_{name}"] == 0.0
    assert m["dice"] == pytest.approx(1.0) and m["hd95"] == pytest.approx(0.0)


def test_shifted_prediction_lowers_dice_and_hd95_uses_the_spacing():
    lab = _boxes()
    spacing = (3.0, 1.0, 1.0)
    shifted0 = np.roll(lab, 1, axis=0)  # one voxel = 3 mm
    shifted1 = np.roll(lab, 1, axis=1)  # one voxel = 1 mm
    m0 = segmentation_metrics(shifted0, lab, spacing=spacing)
    m1 = segmentation_metrics(shifted1, lab, spacing=spacing)
    for m in (m0, m1):
        assert 0.0 < m["dice_tumour_core"] < 1.0 and 0.0 < m["dice_oedema"] < 1.0
    # the core (6 voxels) loses 1/6 of its overlap: Dice 2*5/12
    assert m0["dice_tumour_core"] == pytest.approx(10 / 12, abs=1e-6)
    assert m0["hd95_tumour_core"] == pytest.approx(3.0, abs=1e-4)
    assert m1["hd95_tumour_core"] == pytest.approx(1.0, abs=1e-4)
    # the same shift measured in voxels (spacing 1) is 1: the spacing is applied, not ignored
    assert segmentation_metrics(shifted0, lab, spacing=1.0)["hd95_tumour_core"] == pytest.approx(1.0, abs=1e-4)
    # an affine gives the same spacing as the numbers
    aff = np.diag([3.0, 1.0, 1.0, 1.0])
    assert segmentation_metrics(shifted0, lab, spacing=aff)["hd95_tumour_core"] == pytest.approx(3.0, abs=1e-4)


def test_empty_classes_are_nan_and_counted_or_brats_convention():
    gt = _boxes()
    gt[gt == 1] = 2  # no tumour core in the ground truth
    pred = gt.copy()
    pred[9:12, 9:12, 9:12] = 1  # false-positive core
    m = segmentation_metrics(pred, gt, spacing=2.0)
    assert math.isnan(m["dice_tumour_core"]) and math.isnan(m["hd95_tumour_core"]) and math.isnan(m["miss_tumour_core"])
    assert m["dice"] == pytest.approx(m["dice_oedema"])  # mean over the finite classes only
    missed = np.where(_boxes() == 1, 2, _boxes())  # core predicted as oedema: core missed
    m2 = segmentation_metrics(missed, _boxes(), spacing=2.0)
    assert m2["dice_tumour_core"] == 0.0 and math.isnan(m2["hd95_tumour_core"]) and m2["miss_tumour_core"] == 1.0
    b = segmentation_metrics(pred, gt, spacing=2.0, empty="brats")
    diagonal = float(np.linalg.norm(np.array(gt.shape) * 2.0))
    assert b["dice_tumour_core"] == 0.0 and b["hd95_tumour_core"] == pytest.approx(diagonal)
    both_empty = segmentation_metrics(gt, gt, empty="brats")
    assert both_empty["dice_tumour_core"] == 1.0 and both_empty["hd95_tumour_core"] == 0.0
    with pytest.raises(ValueError):
        segmentation_metrics(gt, gt[:-1])


def test_segmentation_input_zscores_inside_the_mask():
    rng = np.random.default_rng(0)
    t1 = rng.normal(5.0, 2.0, (10, 11, 12))
    t2 = rng.normal(-3.0, 0.5, (10, 11, 12))
    mask = np.zeros(t1.shape, bool)
    mask[2:8, 2:9, 3:10] = True
    x = segmentation_input(t1, t2, mask)
    assert x.shape == (2, 10, 11, 12) and x.dtype == np.float32
    for c in range(2):
        assert x[c][mask].mean() == pytest.approx(0.0, abs=1e-5)
        assert x[c][mask].std() == pytest.approx(1.0, abs=1e-4)
        assert np.all(x[c][~mask] == 0)
    with pytest.raises(InputError, match="mask is empty"):
        segmentation_input(t1, t2, np.zeros_like(mask))
    with pytest.raises(InputError, match="one grid"):
        segmentation_input(t1, t2[:-1], mask)


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    d = tmp_path_factory.mktemp("seg")
    datalist = build_nexus_dataset(d, num_train=2, num_val=0, num_test=0, spacing=6.0)
    return json.loads(Path(datalist).read_text(encoding="utf-8"))["training"]


def test_bad_label_map_names_the_file(subjects, tmp_path):
    item = dict(subjects[0])
    lab = np.asarray(nib.load(item["label"]).dataobj).astype(np.float32)
    lab[0, 0, 0] = 7
    bad = save_nifti(lab, nib.load(item["label"]).affine, tmp_path / "bad_label.nii.gz")
    item["label"] = str(bad)
    with pytest.raises(InputError, match="bad_label.nii.gz"):
        load_segmentation_item(item)
    item = dict(subjects[0], mask="")
    with pytest.raises(InputError, match="lacks"):
        load_segmentation_item(item)


def test_training_lowers_the_loss_and_the_network_round_trips(subjects, tmp_path):
    from monai.losses import DiceCELoss

    loaded = [load_segmentation_item(it) for it in subjects]
    x = torch.from_numpy(np.stack([d["image"][:, :32, :32, :32] for d in loaded]))
    y = torch.from_numpy(np.stack([d["label"][:, :32, :32, :32] for d in loaded]))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)

    torch.manual_seed(0)
    net = build_segmentation_network(**TINY)
    with torch.no_grad():
        before = float(loss_fn(net.eval()(x), y))
    net, history = train_segmentation(
        subjects, network=net, max_epochs=12, roi_size=16, num_samples=4, batch_size=4, learning_rate=1e-2
    )
    with torch.no_grad():
        after = float(loss_fn(net(x), y))
    assert len(history) == 12 and all(math.isfinite(v) for v in history)
    assert np.mean(history[-3:]) < np.mean(history[:3])
    assert after < before

    t1 = nib.load(subjects[0]["t1w"]).get_fdata()
    t2 = nib.load(subjects[0]["t2w"]).get_fdata()
    mask = nib.load(subjects[0]["mask"]).get_fdata() > 0
    seg = segment(net, t1, t2, mask, roi_size=16)
    assert seg.shape == t1.shape and seg.dtype == np.uint8 and set(np.unique(seg)) <= {0, 1, 2}

    # cache: trained once, reused when the settings match, retrained when they differ
    cache = tmp_path / "seg" / "model.pt"
    kwargs = dict(max_epochs=1, roi_size=16, num_samples=2, batch_size=2)
    net1, info1 = train_or_load_segmentation(subjects, cache, network_kwargs=TINY, **kwargs)
    assert not info1["cached"] and cache.is_file() and len(info1["loss_history"]) == 1
    state = torch.load(cache, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert json.loads((tmp_path / "seg" / "model.pt.json").read_text(encoding="utf-8"))["network"]["channels"] == [4, 8, 16]
    net2, info2 = train_or_load_segmentation(subjects, cache, network_kwargs=TINY, **kwargs)
    assert info2["cached"]
    np.testing.assert_array_equal(segment(net1, t1, t2, mask, roi_size=16), segment(net2, t1, t2, mask, roi_size=16))
    _, info3 = train_or_load_segmentation(subjects, cache, network_kwargs=TINY, **dict(kwargs, learning_rate=5e-4))
    assert not info3["cached"]
    loaded_net = load_segmentation_network(cache)
    assert tuple(loaded_net.channels) == (4, 8, 16)
    with pytest.raises(InputError, match="checkpoint not found"):
        load_segmentation_network(tmp_path / "nothing.pt")
