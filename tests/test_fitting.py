"""Subject-specific fitting: geometry of the shared frame, samples, loss, batching, inference grid, bad input."""

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_inr import coords
from monai_inr.coords import SharedFrame
from monai_inr.data.coordinates import ContrastPair, CoordinateDataset, ShuffledBatchSampler
from monai_inr.engines.checks import check_fitted_geometry
from monai_inr.engines.prepare_batch import PrepareBatchTargetSpacing
from monai_inr.errors import InputError, find_input_error
from monai_inr.evaluation.bundle import fit_subject
from monai_inr.inferers.grid import MultiContrastGridInferer, predict_on_grid
from monai_inr.io import output_names
from monai_inr.losses.multi_contrast import MultiContrastMSELoss
from monai_inr.networks.nets import MultiContrastINR
from monai_inr.transforms import ThickSliceAcquisition, resize_cell_centred
from monai_inr.transforms.functional import resample_to_grid
from monai_inr.transforms.io import SaveContrastsd

MC_TRAIN = str(Path(__file__).resolve().parents[1] / "bundles/multi_contrast_inr/configs/train.json")
SMALL = {"encoding_kwargs": {"num_frequencies": 8}, "trunk_width": 16, "trunk_layers": 2, "head_width": 8}


def _hr(shape=(16, 18, 14)):
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    r = np.sqrt((g**2).sum(0))
    return (np.clip(1.2 - r, 0, None) * (1 + 0.3 * np.sin(3 * g[0]))).astype(np.float32)


def _affine(spacing=(1.0, 1.0, 1.0), origin=(-8.0, -9.0, -7.0)):
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = origin
    return a


def _save(path, data, affine):
    img = nib.Nifti1Image(np.asarray(data, np.float32), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return str(path)


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    hr, a = _hr(), _affine()
    lr1 = ThickSliceAcquisition(axis=2, factor=2)(hr[None], affine=a)
    lr2 = ThickSliceAcquisition(axis=1, factor=3)(hr[None], affine=a)
    f1 = _save(d / "sub_T1w.nii.gz", lr1[0], np.asarray(lr1.affine))
    f2 = _save(d / "sub_T2w.nii.gz", 2 * lr2[0] + 1, np.asarray(lr2.affine))
    return d, f1, f2, hr, a


def test_shared_frame_union_fov_and_output_grid():
    a1, a2 = _affine((1, 1, 4)), _affine((1, 4, 1), origin=(-8.0, -12.0, -5.0))
    frame = SharedFrame.from_grids([((16, 18, 4), a1), ((16, 5, 14), a2)])
    # union of the voxel-edge boxes: x [-8.5, 7.5], y [-14, 8.5], z [-9, 8.5]
    np.testing.assert_allclose(frame.lower, [-8.5, -14.0, -9.0])
    np.testing.assert_allclose(frame.upper, [7.5, 8.5, 8.5])
    assert frame.half_extent == pytest.approx(11.25)  # one scalar: half the longest side (y: 22.5 mm)
    b = frame.fov_bounds
    assert b.min() >= -1 - 1e-12 and b.max() <= 1 + 1e-12 and np.isclose(np.abs(b).max(), 1)
    w = np.random.default_rng(0).uniform(-10, 10, (20, 3))
    np.testing.assert_allclose(frame.normalized_to_world(frame.world_to_normalized(w)), w, atol=1e-10)
    np.testing.assert_allclose(SharedFrame.from_affine(frame.affine, frame.fov_bounds).lower, frame.lower)
    # isotropic grid at exactly the target spacing, centred on the union FOV
    shape, aff = frame.output_grid(0.5)
    assert shape == (32, 45, 35)
    np.testing.assert_allclose(coords.spacing_from_affine(aff), [0.5, 0.5, 0.5])
    centre = coords.voxel_to_world((np.asarray(shape) - 1) / 2.0, aff)
    np.testing.assert_allclose(centre, (frame.lower + frame.upper) / 2, atol=1e-9)
    lo_edge = coords.voxel_to_world(np.full(3, -0.5), aff)
    hi_edge = coords.voxel_to_world(np.asarray(shape) - 0.5, aff)
    assert np.all(np.abs(lo_edge - frame.lower) <= 0.25 + 1e-9) and np.all(np.abs(hi_edge - frame.upper) <= 0.25 + 1e-9)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(InputError, match="target_spacing"):
            frame.output_grid(bad)


def test_shared_frame_follows_an_oblique_flipped_reference():
    rot = np.array([[math.cos(0.3), -math.sin(0.3), 0], [math.sin(0.3), math.cos(0.3), 0], [0, 0, 1]])
    a1 = np.eye(4)
    a1[:3, :3] = rot @ np.diag([-2.0, 2.0, 3.0])  # flipped first axis (LAS-like) and rotated
    a1[:3, 3] = [10, -5, 3]
    frame = SharedFrame.from_grids([((8, 9, 5), a1), ((8, 9, 5), a1)])
    shape, aff = frame.output_grid(1.0)
    assert shape == (16, 18, 15)
    np.testing.assert_allclose(aff[:3, :3], rot @ np.diag([-1.0, 1.0, 1.0]), atol=1e-12)
    # the output covers the same box as the input: corners coincide
    corner = np.full(3, -0.5)
    np.testing.assert_allclose(coords.voxel_to_world(corner, aff), coords.voxel_to_world(corner, a1))


def test_acquired_sampling_per_frame_axis():
    a1, a2 = _affine((1, 1, 4)), _affine((1, 4, 1), origin=(-8.0, -12.0, -5.0))
    frame = SharedFrame.from_grids([((16, 18, 4), a1), ((16, 5, 14), a2)])
    np.testing.assert_allclose(frame.sampling_along_axes(a1), [1, 1, 4])
    np.testing.assert_allclose(frame.sampling_along_axes(a2), [1, 4, 1])
    # a 1 mm x 4 mm grid turned 45 degrees about z samples x and y every sqrt(2) mm
    rot = np.array([[math.cos(math.pi / 4), -math.sin(math.pi / 4), 0], [math.sin(math.pi / 4), math.cos(math.pi / 4), 0],
                    [0, 0, 1]])
    oblique = np.eye(4)
    oblique[:3, :3] = rot @ np.diag([1.0, 4.0, 1.0])
    np.testing.assert_allclose(frame.sampling_along_axes(oblique), [math.sqrt(2), math.sqrt(2), 1.0])
    # cells across [-1, 1] (22.5 mm here), rounded up so that a cell is never coarser than the sampling
    assert frame.cells_across([1.0, 1.0, 4.0]) == [23, 23, 6] and frame.cells_across(2.0) == [12, 12, 12]


def test_contrast_pair_acquired_resolution(pair_files):
    _, f1, f2, _, _ = pair_files
    pair = ContrastPair(f1, f2)  # 2 mm axial-thick and 3 mm coronal-thick slices of a 1 mm 16 x 18 x 14 mm volume
    np.testing.assert_allclose(pair.acquired_sampling(), [1, 1, 1])  # every axis is sampled in-plane by one of them
    assert pair.acquired_resolution() == [18, 18, 18]
    # a single-contrast fit sees only its own slices: its thick axis keeps the slice spacing
    np.testing.assert_allclose(pair.acquired_sampling([0]), [1, 1, 2])
    assert pair.acquired_resolution([1]) == [18, 6, 18]
    same_axis = ContrastPair(f1, f1)
    np.testing.assert_allclose(same_axis.acquired_sampling(), [1, 1, 2])
    assert same_axis.acquired_resolution() == [18, 18, 9]
    net = MultiContrastINR("split_head", "hashgrid", trunk_width=8, trunk_layers=1, head_width=8,
                           encoding_kwargs={"num_levels": 3, "log2_table_size": 10, "base_resolution": 4,
                                            "max_resolution": same_axis.acquired_resolution()})
    assert net.encoding.resolutions[-1] == (18, 18, 9)


def test_contrast_pair_samples_are_the_voxel_centres(pair_files):
    _, f1, f2, hr, a = pair_files
    pair = ContrastPair(f1, f2)
    assert pair.names == ["sub_T1w", "sub_T2w"] and pair.overlap == 1.0
    assert pair.shapes == [(16, 18, 7), (16, 6, 14)]
    raw2 = nib.load(f2).get_fdata()
    np.testing.assert_allclose(pair.intensity_range[1], [raw2.min(), raw2.max()], rtol=1e-5)
    np.testing.assert_allclose(pair.images[1], (raw2 - raw2.min()) / (raw2.max() - raw2.min()), atol=1e-6)
    # the union FOV is the HR FOV
    np.testing.assert_allclose(pair.frame.lower, coords.voxel_to_world(np.full(3, -0.5), a), atol=1e-6)
    for c in range(2):
        n = pair.coordinates(c).double().numpy()
        ijk = np.stack(np.unravel_index(np.arange(len(n)), pair.shapes[c]), -1)
        world = coords.voxel_to_world(ijk, pair.affines[c])
        np.testing.assert_allclose(pair.frame.normalized_to_world(n), world, atol=1e-4)
    ds = pair.dataset()
    assert len(ds) == 16 * 18 * 7 + 16 * 6 * 14
    t = ds.target
    n1 = 16 * 18 * 7
    assert torch.isnan(t[:n1, 1]).all() and torch.isnan(t[n1:, 0]).all()
    assert not torch.isnan(t[:n1, 0]).any() and float(t[:n1, 0].max()) == 1.0 and float(t[:n1, 0].min()) == 0.0
    single = pair.dataset([1])
    assert single.target.shape == (16 * 6 * 14, 1) and not torch.isnan(single.target).any()
    pts = pair.mask_points(500, seed=1)
    assert pts.shape == (500, 3) and torch.equal(pts, pair.mask_points(500, seed=1))
    assert pair.in_mask(pair.frame.normalized_to_world(pts.double().numpy())).all()
    g = pair.geometry([1])
    assert g["intensity_range"].shape == (1, 2)


def test_loss_each_voxel_supervises_only_its_contrast():
    loss = MultiContrastMSELoss([1.0, 2.0])
    pred = torch.tensor([[0.5, 0.1], [0.2, 0.9], [0.0, 0.3]], requires_grad=True)
    nan = float("nan")
    target = torch.tensor([[1.0, nan], [0.0, nan], [nan, 0.0]])
    value = loss(pred, target)
    expected = ((0.5 - 1.0) ** 2 + 0.2**2) / 2 + 2.0 * 0.3**2
    assert value.item() == pytest.approx(expected)
    value.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[0, 1] == 0 and pred.grad[1, 1] == 0 and pred.grad[2, 0] == 0
    assert float(loss(pred.detach(), torch.full((3, 2), nan))) == 0.0


def test_sampler_covers_every_sample_once_per_epoch_and_reshuffles():
    s = ShuffledBatchSampler(23, 5, seed=3)
    assert len(s) == 5
    e1 = torch.cat(list(s))
    e2 = torch.cat(list(s))
    assert sorted(e1.tolist()) == list(range(23)) == sorted(e2.tolist())
    assert not torch.equal(e1, e2)
    ds = CoordinateDataset(torch.rand(23, 3), torch.rand(23, 2))
    loader = torch.utils.data.DataLoader(ds, batch_size=None, sampler=s)
    batches = list(loader)
    assert [b["coord"].shape[0] for b in batches] == [5, 5, 5, 5, 3]
    assert len(list(ShuffledBatchSampler(23, 5, drop_last=True))) == 4


def test_sampler_splits_ranks(monkeypatch):
    s = ShuffledBatchSampler(10, 2, seed=0)
    parts = []
    for rank in range(3):
        monkeypatch.setattr(s, "_rank_world", lambda r=rank: (r, 3))
        s.set_epoch(0)
        parts.append(torch.cat(list(s)))
    assert all(len(p) == 4 for p in parts)  # ceil(10 / 3), padded
    assert set(torch.cat(parts).tolist()) == set(range(10))


def test_resample_matches_cell_centred_resize():
    rng = np.random.default_rng(0)
    lr = rng.random((6, 7, 4)).astype(np.float32)
    a_lr = _affine((2.0, 2.0, 3.0))
    shape = (12, 14, 12)
    a_hr = coords.fov_affine(a_lr, lr.shape, shape)
    for order in (3, 1):
        np.testing.assert_allclose(
            resample_to_grid(lr, a_lr, shape, a_hr, order=order), resize_cell_centred(lr, shape, order=order), atol=1e-5
        )


def test_fit_predict_infer_and_save(pair_files, tmp_path):
    _, f1, f2, hr, a = pair_files
    # the fit is the bundle's train.json run through ConfigWorkflow
    res = fit_subject(MC_TRAIN, f1, f2, {**SMALL, "epochs": 3, "batch_size": 256, "learning_rate": 3e-3,
                                         "mi_points": 400, "mi_min_epochs": 1, "mi_min_delta": 0.0, "device": "cpu"})
    net, pair = res.network, res.subject
    assert isinstance(net, MultiContrastINR) and isinstance(pair, ContrastPair)
    psnr = [m["train_psnr"] for m in res.metrics]  # -10 log10(mean epoch loss / 2): rises as the loss falls
    assert res.epochs == 3 and len(psnr) == 3 and len(res.mi_history) == 3
    assert psnr[-1] > psnr[0]
    torch.testing.assert_close(net.frame_affine, torch.as_tensor(pair.frame.affine))
    # grid prediction == query at the world positions of the grid's voxel centres
    shape, aff = pair.output_grid(2.0)
    grid = predict_on_grid(net, pair.frame, shape, aff)
    ijk = np.array([[0, 0, 0], [3, 4, 5], [shape[0] - 1, shape[1] - 1, shape[2] - 1]])
    pts = torch.as_tensor(pair.frame.world_to_normalized(coords.voxel_to_world(ijk, aff)), dtype=torch.float32)
    with torch.no_grad():
        direct = net.query(pts)
    torch.testing.assert_close(grid[:, ijk[:, 0], ijk[:, 1], ijk[:, 2]].T, direct, atol=1e-5, rtol=1e-5)
    # inference through the inferer (geometry from the network's buffers) and the saver
    inferer = MultiContrastGridInferer(chunk_size=1000)
    spacing, _ = PrepareBatchTargetSpacing()({"target_spacing": 2.0})
    out = inferer(spacing, net)
    assert out.shape == (1, 2, *shape)
    np.testing.assert_allclose(np.asarray(out.affine), aff, atol=1e-9)
    torch.testing.assert_close(out[0], grid)
    SaveContrastsd("pred", tmp_path, names=pair.names)({"pred": out})
    for c, name in enumerate(pair.names):
        img = nib.load(str(tmp_path / f"{name}_sr.nii.gz"))
        np.testing.assert_allclose(img.affine, aff, atol=1e-5)
        lo, hi = pair.intensity_range[c]
        expected = np.clip(grid[c].numpy(), 0, 1) * (hi - lo) + lo
        np.testing.assert_allclose(img.get_fdata(), expected, rtol=1e-4, atol=1e-4)
    check_fitted_geometry(net, f1, f2)
    with pytest.raises(InputError, match="memory budget"):
        MultiContrastGridInferer(memory_budget_gb=0.001).plan(net, 0.1)
    shifted = np.asarray(nib.load(f1).affine).copy()
    shifted[:3, 3] += 3.0
    moved = _save(tmp_path / "moved.nii.gz", nib.load(f1).get_fdata(), shifted)
    with pytest.raises(InputError, match="fitted to other images"):
        check_fitted_geometry(net, moved, f2)


def _bad(tmp_path, case, pair_files):
    d, f1, f2, hr, a = pair_files
    p = tmp_path / f"{case}.nii.gz"
    if case == "4d":
        return _save(p, np.random.rand(8, 8, 8, 3), a), f2
    if case == "nan":
        data = nib.load(f1).get_fdata()
        data[2, 3, 1] = np.nan
        return _save(p, data, nib.load(f1).affine), f2
    if case == "zero_voxel":  # an sform whose third column is zero (as written by a broken converter)
        good = nib.load(f1)
        hdr = good.header.copy()
        hdr["qform_code"], hdr["sform_code"] = 0, 1
        hdr["srow_z"] = [0.0, 0.0, 0.0, float(good.affine[2, 3])]
        nib.save(nib.Nifti1Image(good.get_fdata().astype(np.float32), None, header=hdr), str(p))
        return str(p), f2
    if case == "no_affine":
        img = nib.Nifti1Image(nib.load(f1).get_fdata().astype(np.float32), None)
        img.set_qform(None, code=0)
        img.set_sform(None, code=0)
        nib.save(img, str(p))
        return str(p), f2
    if case == "no_overlap":
        far = np.asarray(nib.load(f2).affine).copy()
        far[:3, 3] += 500.0
        return f1, _save(p, nib.load(f2).get_fdata(), far)
    if case == "missing":
        return str(tmp_path / "nothing.nii.gz"), f2
    if case == "empty":
        return "", f2
    raise ValueError(case)


@pytest.mark.parametrize(
    "case, message",
    [
        ("4d", "expected a 3D image but got 4D"),
        ("nan", "NaN or Inf"),
        ("zero_voxel", "zero voxel size"),
        ("no_affine", "no scanner geometry"),
        ("no_overlap", "do not overlap"),
        ("missing", "file not found"),
        ("empty", "no file given"),
    ],
)
def test_bad_input_one_sentence(tmp_path, pair_files, case, message):
    c1, c2 = _bad(tmp_path, case, pair_files)
    with pytest.raises(InputError) as err:
        ContrastPair(c1, c2)
    sentence = str(find_input_error(err.value))
    assert message in sentence and "\n" not in sentence and sentence.endswith("."), sentence


def test_mask_inputs(pair_files, tmp_path):
    _, f1, f2, _, _ = pair_files
    img = nib.load(f1)
    m = _save(tmp_path / "m1.nii.gz", (img.get_fdata() > 0.1).astype(np.float32), img.affine)
    pair = ContrastPair(f1, f2, mask1=m)
    np.testing.assert_array_equal(pair.masks[0], img.get_fdata() > 0.1)
    wrong = _save(tmp_path / "m2.nii.gz", np.ones((4, 4, 4)), img.affine)
    with pytest.raises(InputError, match="does not match"):
        ContrastPair(f1, f2, mask2=wrong)


def test_output_names():
    assert output_names(["/a/sub-1_T1w.nii.gz", "b/sub-1_T2w.nii"]) == ["sub-1_T1w", "sub-1_T2w"]
    assert output_names(["", None]) == ["contrast1", "contrast2"]
    assert output_names(["x/a.nii.gz", "y/a.nii.gz"]) == ["a_contrast1", "a_contrast2"]
