"""Folder datalists: reproducible, disjoint splits, contrast pairing, clear errors."""

import json

import pytest

from monai_inr.data import build_folder_datalist, load_datalist, select_keys, split_ids
from monai_inr.errors import InputError


def _touch(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")  # the datalist never reads the files
    return folder


NAMES = [f"case{i:02d}.nii.gz" for i in range(10)]


def _ids(datalist):
    return {split: [item["subject"] for item in items] for split, items in datalist.items()}


def test_split_is_reproducible_disjoint_and_independent_of_listing_order(tmp_path):
    a = build_folder_datalist(_touch(tmp_path / "a", NAMES), seed=3)
    b = build_folder_datalist(_touch(tmp_path / "b", list(reversed(NAMES))), seed=3)
    assert _ids(a) == _ids(b)
    ids = _ids(a)
    assert [len(ids[s]) for s in ("training", "validation", "test")] == [8, 1, 1]
    everything = ids["training"] + ids["validation"] + ids["test"]
    assert sorted(everything) == [n[:-7] for n in NAMES] and len(set(everything)) == 10
    item = a["training"][0]
    assert set(item) == {"image", "subject"} and item["image"].endswith(f"{item['subject']}.nii.gz")
    assert _ids(build_folder_datalist(tmp_path / "a", seed=3)) == ids
    other = [_ids(build_folder_datalist(tmp_path / "a", seed=s))["test"] for s in range(5)]
    assert len({tuple(t) for t in other}) > 1


def test_at_least_one_training_item(tmp_path):
    one = build_folder_datalist(_touch(tmp_path / "one", ["x.nii"]), val_fraction=0.4, test_fraction=0.5)
    assert _ids(one) == {"training": ["x"], "validation": [], "test": []}
    two = split_ids(["b", "a"], 0.4, 0.5)  # 1 test, 0 validation (training keeps one)
    assert len(two["training"]) == 1 and len(two["test"]) == 1 and two["validation"] == []
    assert sorted(two["training"] + two["test"]) == ["a", "b"]


def test_errors(tmp_path):
    with pytest.raises(InputError, match="folder not found"):
        build_folder_datalist(tmp_path / "missing")
    (tmp_path / "file.nii").write_bytes(b"")
    with pytest.raises(InputError, match="not a folder"):
        build_folder_datalist(tmp_path / "file.nii")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="no files match"):
        build_folder_datalist(empty)
    folder = _touch(tmp_path / "f", NAMES)
    with pytest.raises(InputError, match="below 1"):
        build_folder_datalist(folder, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(InputError, match="test_fraction"):
        build_folder_datalist(folder, test_fraction=-0.1)


def test_paired_contrasts_and_output_file(tmp_path):
    names = [f"sub-{i:02d}_{c}.nii.gz" for i in range(6) for c in ("T1w", "T2w")]
    names.remove("sub-04_T2w.nii.gz")
    folder = _touch(tmp_path / "mc", names + ["sub-00_T1wx.nii.gz.partial"])
    pattern = {"t1w": "*_T1w.nii.gz", "t2w": "*_T2w.nii.gz"}
    with pytest.warns(UserWarning, match="sub-04"):
        dl = build_folder_datalist(folder, pattern=pattern, val_fraction=0.2, test_fraction=0.2,
                                   output_file=tmp_path / "out" / "datalist.json")
    ids = _ids(dl)
    everyone = sorted(ids["training"] + ids["validation"] + ids["test"])
    assert everyone == ["sub-00", "sub-01", "sub-02", "sub-03", "sub-05"]
    for items in dl.values():
        for item in items:
            assert item["t1w"].endswith(f"{item['subject']}_T1w.nii.gz")
            assert item["t2w"].endswith(f"{item['subject']}_T2w.nii.gz")
    assert json.loads((tmp_path / "out" / "datalist.json").read_text(encoding="utf-8")) == dl
    assert load_datalist(tmp_path / "out" / "datalist.json", "test") == dl["test"]
    with pytest.raises(InputError, match="lack"):
        build_folder_datalist(folder, pattern=pattern, on_missing="error")


def test_subject_regex_and_subfolders(tmp_path):
    for sub in ("BraTS_001", "BraTS_002", "BraTS_003"):
        _touch(tmp_path / "brats" / sub, [f"{sub}_t1.nii.gz", f"{sub}_t1ce.nii.gz", f"{sub}_t2.nii.gz"])
    dl = build_folder_datalist(tmp_path / "brats", pattern={"t1": "**/*_t1.nii.gz", "t2": "**/*_t2.nii.gz"},
                               val_fraction=0, test_fraction=0)
    assert [i["subject"] for i in dl["training"]] == ["BraTS_001", "BraTS_002", "BraTS_003"]
    assert all(i["t1"].endswith("_t1.nii.gz") for i in dl["training"])  # not t1ce
    flat = _touch(tmp_path / "flat", ["IXI002-Guys-0828-T1.nii.gz", "IXI012-HH-1211-T1.nii.gz"])
    dl = build_folder_datalist(flat, subject_regex=r"^(?P<id>IXI\d+)", val_fraction=0, test_fraction=0)
    assert [i["subject"] for i in dl["training"]] == ["IXI002", "IXI012"]
    dup = _touch(tmp_path / "dup", ["IXI002-a.nii.gz", "IXI002-b.nii.gz"])
    with pytest.raises(InputError, match="two files"):
        build_folder_datalist(dup, pattern={"image": "*.nii.gz"}, subject_regex=r"^(IXI\d+)")


def test_load_datalist_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_datalist(tmp_path / "nope.json")
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"training": [{"image": "a.nii.gz"}]}))
    assert load_datalist(path) == [{"image": str(tmp_path / "a.nii.gz")}]
    with pytest.raises(InputError, match="'test'"):
        load_datalist(path, "test")


def test_select_keys():
    items = [{"t1w": "a_T1w.nii.gz", "t2w": "a_T2w.nii.gz", "label": "a_dseg.nii.gz", "mask": "m", "subject": "a"}]
    assert select_keys(items, image_key="t1w") == [{"image": "a_T1w.nii.gz", "mask": "m"}]
    assert select_keys(items, {"t1w": "image", "t2w": "reference"}, keep=("subject",)) == [
        {"image": "a_T1w.nii.gz", "reference": "a_T2w.nii.gz", "subject": "a"}]
    assert "image" not in items[0]  # input untouched
    with pytest.raises(InputError, match="'flair'"):
        select_keys(items, image_key="flair")


def test_current_datalist_is_reused_only_with_the_same_parameters_and_all_files(tmp_path):
    from monai_inr.data.datalist import current_datalist

    img = tmp_path / "a.nii.gz"
    img.write_bytes(b"x")
    doc = {"training": [{"subject": "s", "image": str(img)}], "test": [], "metadata": {"parameters": {"n": 1}}}
    path = tmp_path / "datalist.json"
    assert current_datalist(path, {"n": 1}) is None  # no file yet
    path.write_text(json.dumps(doc))
    assert current_datalist(path, {"n": 1}) == doc
    assert current_datalist(path, {"n": 2}) is None  # built with other parameters
    img.unlink()
    assert current_datalist(path, {"n": 1}) is None  # a file it names is gone
    assert current_datalist(path, {"n": 1}, splits=("test",)) == doc  # only the splits asked for are checked
    path.write_text("{not json")
    assert current_datalist(path, {"n": 1}) is None
