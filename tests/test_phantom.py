"""The synthetic brain: determinism, geometry, contrast physics, lesions, writing and the dataset builder."""

import json
import math

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from scipy import ndimage as ndi

from monai_inr.coords import spacing_from_affine, voxel_to_world, world_to_voxel
from monai_inr.data import phantom as P
from monai_inr.data import select_keys
from monai_inr.errors import InputError

# one worker loads the template once for all of these
pytestmark = pytest.mark.xdist_group("phantom")

TINY = 4.0


@pytest.fixture(scope="module")
def tiny():
    return P.make_subject(5, spacing=TINY)


@pytest.fixture(scope="module")
def tiny_lesion():
    return P.make_subject(5, spacing=TINY, lesion=True, necrosis=True)


@pytest.fixture(scope="module")
def small_lesion():
    return P.make_subject(12, spacing=2.0, lesion=True, necrosis=False, keep_fractions=True)


def _label_means(subject, key):
    img = subject.images[key]
    return {name: float(img[subject.labels == value].mean()) for name, value in P.LABELS.items()
            if (subject.labels == value).any()}


def test_template_loads_offline_and_is_consistent():
    tpl = P.load_template()
    assert tpl.shape == P.TEMPLATE_SHAPE == (197, 233, 189)
    np.testing.assert_allclose(spacing_from_affine(tpl.affine), 1.0)
    assert np.all(np.diag(tpl.affine)[:3] > 0)  # RAS
    total = tpl.fractions.sum(axis=0)
    assert tpl.fractions.min() >= 0 and total.max() <= 1.0 + 1e-5
    assert 0.05 < tpl.fractions[0].sum() / total.sum() < 0.3  # CSF share of the intracranial volume
    assert len(tpl.lesion_centres) > 100


def test_deterministic_per_seed(tiny):
    again = P.make_subject(5, spacing=TINY)
    assert again.images.keys() == tiny.images.keys() == set(P.IMAGE_KEYS)
    for key in P.IMAGE_KEYS:
        np.testing.assert_array_equal(again.images[key], tiny.images[key])
        assert again.images[key].dtype == np.float32 and np.isfinite(again.images[key]).all()
    np.testing.assert_array_equal(again.labels, tiny.labels)
    np.testing.assert_array_equal(again.affine, tiny.affine)
    assert json.dumps(again.meta, sort_keys=True) == json.dumps(tiny.meta, sort_keys=True)  # JSON-serialisable


def test_different_seeds_differ(tiny):
    other = P.make_subject(6, spacing=TINY)
    assert not np.array_equal(other.images["t1w"], tiny.images["t1w"])
    assert other.meta["pose"] != tiny.meta["pose"]
    assert other.meta["tissues"]["wm"]["t1"] != tiny.meta["tissues"]["wm"]["t1"]


def test_shapes_and_fov_geometry(tiny):
    assert P.grid_shape(1.0) == (197, 233, 189)
    assert P.grid_shape(2.0) == (99, 117, 95)
    assert tiny.shape == P.grid_shape(TINY) == (49, 58, 47)
    for arr in (*tiny.images.values(), tiny.labels, tiny.mask):
        assert arr.shape == tiny.shape
    tpl = P.load_template()
    # the field of view (outer voxel edges, hence its centre) is the template's, in world millimetres
    for corner in ([-0.5] * 3, [n - 0.5 for n in tiny.shape]):
        tpl_corner = [-0.5] * 3 if corner[0] < 0 else [n - 0.5 for n in tpl.shape]
        np.testing.assert_allclose(voxel_to_world(np.array(corner), tiny.affine),
                                   voxel_to_world(np.array(tpl_corner, dtype=float), tpl.affine), atol=1e-9)
    centre = voxel_to_world((np.array(tiny.shape) - 1) / 2.0, tiny.affine)
    np.testing.assert_allclose(centre, voxel_to_world((np.array(tpl.shape) - 1) / 2.0, tpl.affine), atol=1e-9)
    np.testing.assert_allclose(tiny.spacing, np.array(tpl.shape) / np.array(tiny.shape))
    assert tiny.meta["spacing"] == pytest.approx(list(tiny.spacing))


def test_labels_mask_and_lesion_only_when_requested(tiny, tiny_lesion):
    assert tiny.labels.dtype == np.uint8 and tiny.mask.dtype == np.uint8
    assert set(np.unique(tiny.labels)) == {0, 1, 2, 3}
    np.testing.assert_array_equal(tiny.mask, tiny.labels > 0)
    assert tiny.meta["lesion"] is None
    assert set(np.unique(tiny_lesion.labels)) == {0, 1, 2, 3, 4, 5}
    assert tiny_lesion.meta["lesion"]["necrosis"] is True
    # same seed: same healthy anatomy away from the lesion (independent random streams)
    assert np.mean(tiny.labels == tiny_lesion.labels) > 0.95
    assert tiny.meta["pose"] == tiny_lesion.meta["pose"]


def test_contrast_ordering(small_lesion):
    s = small_lesion
    t1 = _label_means(s, "t1w")
    assert t1["wm"] > t1["gm"] > t1["csf"]
    t2 = _label_means(s, "t2w")
    assert t2["csf"] > t2["gm"] > t2["wm"]
    assert t2["oedema"] > t2["wm"] and t2["tumour"] > t2["wm"]
    flair = _label_means(s, "flair")
    assert flair["csf"] < 0.5 * flair["wm"] and flair["gm"] > flair["wm"]
    assert flair["oedema"] > flair["gm"]
    pd = _label_means(s, "pd")
    assert pd["gm"] > pd["wm"]
    na = _label_means(s, "sodium")
    assert na["csf"] > 1.5 * na["gm"] and na["gm"] > na["wm"]  # label means carry partial volume
    assert na["tumour"] > na["gm"] and na["oedema"] > na["wm"]
    # pure tissue voxels carry the (jittered) literature concentrations
    pure_csf = s.fractions["csf"] > 0.97
    assert pure_csf.sum() > 20
    assert 115 < float(np.median(s.images["sodium"][pure_csf])) < 165
    pure_wm = s.fractions["wm"] > 0.97
    assert 25 < float(np.median(s.images["sodium"][pure_wm])) < 45
    assert float(np.median(s.images["sodium_fast_fraction"][pure_wm])) == pytest.approx(0.6, abs=0.1)
    assert float(np.median(s.images["t2star_long"][pure_csf])) == pytest.approx(55.0, rel=0.2)
    assert s.images["sodium"][s.labels == 0].mean() < 1.0
    # fractions: partition of unity inside the head, lesions only within the brain
    total = sum(s.fractions.values())
    assert total.max() <= 1.0 + 1e-4 and s.fractions["necrosis"].max() == 0.0


def test_sodium_maps_are_a_consistent_biexponential(small_lesion):
    img = small_lesion.images
    np.testing.assert_allclose(P.sodium_signal(img, 0.0), img["sodium"], rtol=1e-5, atol=1e-4)
    s1, s5 = P.sodium_signal(img, 1.0), P.sodium_signal(img, 5.0)
    assert np.isfinite(s5).all() and np.all(s5 <= s1 + 1e-4) and np.all(s1 <= img["sodium"] + 1e-4)
    f = img["sodium_fast_fraction"]
    assert f.min() >= 0 and f.max() <= 1
    both = (img["t2star_short"] > 0) & (img["t2star_long"] > 0)
    assert np.all(img["t2star_short"][both] < img["t2star_long"][both])
    # a 50/50 GM/CSF mixture: the summary matches the exact two-compartment signal to first order in t
    tissues = {k: P.dataclasses.asdict(v) for k, v in P.TISSUES.items()}
    fr = np.zeros((6, 1, 1, 1), np.float32)
    fr[0], fr[1] = 0.5, 0.5
    maps = P._sodium_maps(fr, tissues, P.SODIUM_KEYS)
    gm, csf = P.TISSUES["gm"], P.TISSUES["csf"]
    for t in (0.0, 0.2, 0.5):
        exact = 0.5 * gm.sodium * (gm.sodium_fast_fraction * math.exp(-t / gm.sodium_t2star_short)
                                   + (1 - gm.sodium_fast_fraction) * math.exp(-t / gm.sodium_t2star_long))
        exact += 0.5 * csf.sodium * math.exp(-t / csf.sodium_t2star_long)
        assert float(P.sodium_signal(maps, t)[0, 0, 0]) == pytest.approx(exact, rel=2e-3)


def test_signal_equations():
    csf = P.TISSUES["csf"]
    ti = P.flair_null_ti(csf.t1, 9000.0)
    assert ti == pytest.approx(2481, abs=5)
    assert P.inversion_recovery_signal(1.0, csf.t1, csf.t2, 9000.0, ti, 100.0) < 1e-6
    # MPRAGE steady state equals brute-force repetition of the cycle
    t1 = np.array([832.0, 1331.0, 4300.0])
    fast = P.mprage_signal(1.0, t1, 1e9, te=0.0)
    cos_a, m = math.cos(math.radians(9.0)), np.ones(3)
    for _ in range(60):
        m = 1 - (1 + m) * np.exp(-(900 - 88 * 7.1) / t1)
        for k in range(176):
            centre = m if k == 88 else (centre if k > 88 else None)
            m = 1 - (1 - m * cos_a) * np.exp(-7.1 / t1)
        m = 1 - (1 - m) * np.exp(-(2300 - (900 - 88 * 7.1) - 176 * 7.1) / t1)
    np.testing.assert_allclose(fast, math.sin(math.radians(9.0)) * np.abs(centre), rtol=1e-6)
    assert fast[0] > fast[1] > fast[2]
    assert P.spin_echo_signal(0.65, 832.0, 79.2, 6000.0, 100.0) < P.spin_echo_signal(0.78, 1331.0, 110.0, 6000.0, 100.0)


def test_deformation_is_smooth_and_invertible(tiny):
    d = tiny.meta["deformation"]
    assert 0.5 < d["jacobian_min"] <= 1.0 <= d["jacobian_max"] < 1.5
    assert all(abs(a) <= 6.0 for a in tiny.meta["pose"]["rotation_deg"])


def test_spacings_agree_in_world_coordinates(tiny):
    # the same seed at 2 mm and 4 mm is the same brain: compare on the 4 mm grid via world coordinates
    small = P.make_subject(5, spacing=2.0, contrasts="t2w")
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in tiny.shape], indexing="ij"), -1).reshape(-1, 3).astype(float)
    vox = world_to_voxel(voxel_to_world(ijk, tiny.affine), small.affine)
    resampled = ndi.map_coordinates(small.images["t2w"], vox.T, order=1).reshape(tiny.shape)
    assert np.corrcoef(resampled.ravel(), tiny.images["t2w"].ravel())[0, 1] > 0.97


def test_contrast_subset_matches_full_run(tiny):
    sub = P.make_subject(5, spacing=TINY, contrasts=["t2w", "sodium"])
    assert list(sub.images) == ["t2w", "sodium"]
    np.testing.assert_array_equal(sub.images["t2w"], tiny.images["t2w"])
    np.testing.assert_array_equal(sub.images["sodium"], tiny.images["sodium"])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"spacing": 0.0}, "spacing"), ({"spacing": float("nan")}, "spacing"), ({"contrasts": ["t3w"]}, "t3w"),
     ({"seed": -1}, "seed")],
)
def test_bad_arguments(kwargs, match):
    args = {"seed": 1, "spacing": TINY, **kwargs}
    with pytest.raises(InputError, match=match):
        P.make_subject(**args)


def test_write_subject_round_trip(tiny_lesion, tmp_path):
    item = P.write_subject(tiny_lesion, tmp_path / "out", "sub-0003")
    assert set(item) == set(P.IMAGE_KEYS) | {"label", "mask", "subject"}
    assert item["subject"] == "sub-0003"
    assert item["t1w"].endswith("sub-0003_T1w.nii.gz")
    for key in P.IMAGE_KEYS:
        img = nib.load(item[key])
        np.testing.assert_allclose(img.affine, tiny_lesion.affine, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(img.dataobj), tiny_lesion.images[key])
    label = nib.load(item["label"])
    assert label.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(label.dataobj), tiny_lesion.labels)
    np.testing.assert_array_equal(np.asarray(nib.load(item["mask"]).dataobj), tiny_lesion.mask)
    assert json.loads((tmp_path / "out" / "sub-0003_phantom.json").read_text(encoding="utf-8"))["lesion"]["necrosis"] is True
    assert not [p for p in (tmp_path / "out").iterdir() if ".partial" in p.name]
    with pytest.raises(InputError, match="subject_id"):
        P.write_subject(tiny_lesion, tmp_path, "../x")


def test_build_dataset_splits_idempotence_and_cli(tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["--out_dir", str(out), "--num_train", "2", "--num_val", "1", "--num_test", "2", "--spacing", "4",
            "--lesion", "1", "--lesion_splits", "test", "--contrasts", "t1w", "sodium"]
    path = P.main(args)
    assert path == out / "datalist.json" and str(path) in capsys.readouterr().out
    data = json.loads(path.read_text(encoding="utf-8"))
    assert [len(data[s]) for s in ("training", "validation", "test")] == [2, 1, 2]
    subjects = data["metadata"]["subjects"]
    seeds = {split: {v["seed"] for v in subjects.values() if v["split"] == split} for split in
             ("training", "validation", "test")}
    assert not seeds["training"] & seeds["test"] and not seeds["training"] & seeds["validation"]
    assert [v["lesion"] for v in subjects.values()] == [False, False, False, True, True]
    item = data["test"][0]
    assert set(item) == {"t1w", "sodium", "label", "mask", "subject"}
    assert 5 in np.asarray(nib.load(item["label"]).dataobj)

    # idempotent: same parameters -> nothing rewritten; other parameters -> rebuilt
    mtime = path.stat().st_mtime_ns
    files = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert P.build_dataset(out, num_train=2, num_val=1, num_test=2, spacing=4.0, lesion=True,
                           lesion_splits=("test",), contrasts=("t1w", "sodium")) == path
    assert path.stat().st_mtime_ns == mtime and {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == files
    # the test subjects do not depend on how many training subjects there are
    P.build_dataset(out, num_train=3, num_val=1, num_test=2, spacing=4.0, lesion=True, lesion_splits=("test",),
                    contrasts=("t1w", "sodium"))
    rebuilt = json.loads(path.read_text(encoding="utf-8"))
    assert len(rebuilt["training"]) == 3
    test_seeds = [v["seed"] for v in rebuilt["metadata"]["subjects"].values() if v["split"] == "test"]
    assert test_seeds == sorted(seeds["test"])

    # MONAI reads it; select_keys makes single-image items for the bundles
    items = select_keys(load_decathlon_datalist(path, False, "training"), image_key="t1w")
    assert items[0] == {"image": rebuilt["training"][0]["t1w"], "mask": rebuilt["training"][0]["mask"]}


def test_build_dataset_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="training"):
        P.build_dataset(tmp_path, num_train=0, spacing=TINY)
    with pytest.raises(InputError, match="lesion"):
        P.build_dataset(tmp_path, num_train=1, spacing=TINY, lesion=1.5)
    with pytest.raises(InputError, match="lesion_splits"):
        P.build_dataset(tmp_path, num_train=1, spacing=TINY, lesion_splits=("train",))
    assert not (tmp_path / "datalist.json").exists()
