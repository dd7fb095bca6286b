import json
import logging

import numpy as np
import pytest

from monai_inr.errors import InputError
from preprocessing import outputs as out

pytestmark = pytest.mark.xdist_group("preprocessing")  # shares the phantom/ANTs caches


def test_names():
    name = out.bids_name("01", "acq-23Na", "rec-nufft", "desc-magnitude")
    assert name == "sub-01_acq-23Na_rec-nufft_desc-magnitude.nii.gz"
    assert out.bids_name("sub-02", "from-T2w", "to-23Na", "mode-image", "xfm", ext=".mat") == \
        "sub-02_from-T2w_to-23Na_mode-image_xfm.mat"
    assert out.res_label([2.4286, 2.4286, 2.375]) == "2p43"
    with pytest.raises(InputError):
        out.subject_label("01_a")


def test_staging_commits_all_or_nothing(tmp_path):
    final = tmp_path / "sub-01" / "anat" / "a.json"
    with out.Staging(tmp_path, "step") as stage:
        out.write_json({"x": 1}, stage.path(final))
        assert not final.exists()
        stage.commit()
    assert json.loads(final.read_text()) == {"x": 1}
    with pytest.raises(RuntimeError):
        with out.Staging(tmp_path, "step", overwrite=True) as stage:
            out.write_json({"x": 2}, stage.path(final))
            out.write_json({"y": 2}, stage.path(tmp_path / "b.json"))
            raise RuntimeError("crash in the middle")
    assert json.loads(final.read_text()) == {"x": 1} and not (tmp_path / "b.json").exists()
    assert not list(tmp_path.glob(".staging-*"))  # nothing half-written left behind
    with pytest.raises(InputError, match="already holds step results"):
        with out.Staging(tmp_path, "step") as stage:
            out.write_json({"x": 3}, stage.path(final))
            stage.commit()
    assert json.loads(final.read_text()) == {"x": 1}


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
    text = logfile.read_text()
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
    assert json.loads(d.read_text())["DatasetType"] == "derivative"
