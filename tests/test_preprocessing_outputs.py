import json
import logging

import numpy as np
import pytest

from _bids_helpers import assert_bids_name

from monai_inr.errors import InputError
from preprocessing import outputs as out
from preprocessing.pipeline import StepPaths

pytestmark = pytest.mark.xdist_group("preprocessing")  # shares the phantom/ANTs caches


def test_names():
    name = out.bids_name("01", "acq-23Na", "rec-nufft", "desc-magnitude", "TSC")
    assert name == "sub-01_acq-23Na_rec-nufft_desc-magnitude_TSC.nii.gz"
    assert out.bids_name("sub-02", "from-T2w", "to-23Na", "mode-image", "xfm", ext=".mat") == \
        "sub-02_from-T2w_to-23Na_mode-image_xfm.mat"
    assert out.res_label([2.4286, 2.4286, 2.375]) == "2p43"
    with pytest.raises(InputError):
        out.subject_label("01_a")


def test_names_are_bids_entities_in_order_with_the_suffix_last(tmp_path):
    # the suffix goes last and the entities into the specification's order, whatever order they are given in
    name = out.bids_name("01", "T2w", "desc-preproc", "space-23Na")
    assert name == "sub-01_space-23Na_desc-preproc_T2w.nii.gz"
    parsed = assert_bids_name(name)
    assert parsed["suffix"] == "T2w" and parsed["entities"] == {"sub": "01", "space": "23Na", "desc": "preproc"}
    assert out.bids_name("01", "desc-x", "res-2p43", "acq-23Na", "rec-nufft", "TSC", session="a") == \
        "sub-01_ses-a_acq-23Na_rec-nufft_res-2p43_desc-x_TSC.nii.gz"
    for bad, match in [(("space-23Na", "desc-preproc"), "exactly one suffix"), (("T2w", "bold"), "exactly one suffix"),
                       (("plane-axial", "T2w"), "not a BIDS entity"), (("desc-a", "desc-b", "T2w"), "twice"),
                       (("desc-pre_proc", "T2w"), "letters and digits")]:
        with pytest.raises(ValueError, match=match):
            out.bids_name("01", *bad)
    # the old name (suffix in the middle) is what the strict check and nilearn's parser reject
    with pytest.raises(AssertionError):
        assert_bids_name("sub-01_T2w_space-23Na_desc-preproc.nii.gz")
    # every output name of a subject's steps
    p = StepPaths(tmp_path, "01", upsampled_spacing=[2.4286, 2.4286, 2.375])
    names = [p.magnitude, p.complex, p.upsampled, p.t2w, p.xfm, p.qc, p.index, *p.padded(112)]
    names += [p.sidecar(f) for f in names if f.suffix in (".gz", ".mat")]
    for f in names:
        assert_bids_name(f)
    assert p.t2w.name == "sub-01_space-23Na_desc-preproc_T2w.nii.gz"


def test_sources_are_bids_uris_with_dataset_links(tmp_path):
    der, raw = tmp_path / "derivatives" / "sodium-preproc", tmp_path / "raw"
    links: dict = {}
    assert out.bids_uri(der / "sub-01" / "anat" / "a_T2w.nii.gz", der, links) == "bids::sub-01/anat/a_T2w.nii.gz"
    assert links == {}
    assert out.bids_uri(raw / "sub-01" / "dicom" / "T2w", der, links) == "bids:raw:sub-01/dicom/T2w"
    assert out.bids_uri(raw / "sub-02" / "x_raw.h5", der, links) == "bids:raw:sub-02/x_raw.h5"  # one link per dataset
    assert links == {"raw": "../../raw"} and (der / links["raw"]).resolve() == raw.resolve()
    elsewhere = tmp_path / "scans" / "t2w.nii.gz"
    assert out.bids_uri(elsewhere, der, links) == elsewhere.absolute().as_uri()
    out.write_dataset_description(der)
    out.write_dataset_description(der, links=links)  # added to an existing description, nothing else changed
    desc = json.loads((der / "dataset_description.json").read_text(encoding="utf-8"))
    assert desc["DatasetLinks"] == {"raw": "../../raw"} and desc["DatasetType"] == "derivative"


def test_staging_commits_all_or_nothing(tmp_path):
    final = tmp_path / "sub-01" / "anat" / "a.json"
    with out.Staging(tmp_path, "step") as stage:
        out.write_json({"x": 1}, stage.path(final))
        assert not final.exists()
        stage.commit()
    assert json.loads(final.read_text(encoding="utf-8")) == {"x": 1}
    with pytest.raises(RuntimeError):
        with out.Staging(tmp_path, "step", overwrite=True) as stage:
            out.write_json({"x": 2}, stage.path(final))
            out.write_json({"y": 2}, stage.path(tmp_path / "b.json"))
            raise RuntimeError("crash in the middle")
    assert json.loads(final.read_text(encoding="utf-8")) == {"x": 1} and not (tmp_path / "b.json").exists()
    assert not list(tmp_path.glob(".staging-*"))  # nothing half-written left behind
    with pytest.raises(InputError, match="already holds step results"):
        with out.Staging(tmp_path, "step") as stage:
            out.write_json({"x": 3}, stage.path(final))
            stage.commit()
    assert json.loads(final.read_text(encoding="utf-8")) == {"x": 1}


def test_ensure_absent_and_step_log(tmp_path):
    (tmp_path / "r.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match=r"already holds reconstruct results \(r.nii.gz\); pass --overwrite"):
        out.ensure_absent([tmp_path / "r.nii.gz"], False, tmp_path, "reconstruct")
    out.ensure_absent([tmp_path / "r.nii.gz"], True, tmp_path, "reconstruct")
    logfile = tmp_path / "sub-01_log.txt"
    with out.step_log(logfile, "demo"):
        logging.getLogger("preprocessing.demo").info("inside")
    with pytest.raises(ValueError):
        with out.step_log(logfile, "broken"):
            raise ValueError("boom")
    text = logfile.read_text(encoding="utf-8")
    assert "START demo" in text and "inside" in text and "END demo" in text and "FAILED broken" in text


def test_sidecar_helpers_and_qc(tmp_path):
    aff = np.diag([2.0, 2.0, 3.0, 1.0])
    g = out.geometry_dict((4, 5, 6), aff)
    assert g["spacing_mm"] == [2.0, 2.0, 3.0] and g["direction_ras"] == np.eye(3).tolist()
    v = out.software_versions()
    assert "numpy" in v and "pynufft" in v
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_text("a")
    assert len(out.sha256_path(tmp_path / "d")) == 64
    x = np.zeros((10, 12, 8), np.float32)
    x[2:8, 3:9, 2:6] = 1
    png = out.qc_overlay(x, x, aff, tmp_path / "fig" / "qc.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = out.write_dataset_description(tmp_path)
    assert json.loads(d.read_text(encoding="utf-8"))["DatasetType"] == "derivative"
