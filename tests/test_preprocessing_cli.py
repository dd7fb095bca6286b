"""End to end through the command line: simulate (T2w as a DICOM series) -> run -> datalist, plus bad input."""

import json

import nibabel as nib
import numpy as np
import pytest

from preprocessing.cli import build_parser, main
from preprocessing.grid import ReconGrid
from preprocessing.rawdata import read_raw
from preprocessing.rigid import rigid_errors

from _bids_helpers import assert_bids_name

pytestmark = pytest.mark.xdist_group("preprocessing")  # shares the phantom/ANTs caches


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    raw_dir, der = root / "raw", root / "derivatives" / "sodium-preproc"
    assert main(["simulate", "--out", str(raw_dir), "--subject", "01", "--preset", "tiny", "--seed", "3",
                 "--t2w-format", "dicom", "--lesion"]) == 0
    raw = raw_dir / "sub-01" / "sub-01_acq-23Na_raw.h5"
    dicom = raw_dir / "sub-01" / "dicom" / "T2w"
    assert main(["run", "--raw", str(raw), "--t2w", str(dicom), "--out", str(der), "--subject", "01",
                 "--complex"]) == 0
    return raw_dir, der, raw, dicom


def test_run_writes_every_output_with_sidecars(chain):
    raw_dir, der, raw, _ = chain
    anat = der / "sub-01" / "anat"
    mag = anat / "sub-01_acq-23Na_rec-nufft_desc-magnitude_TSC.nii.gz"
    img = nib.load(mag)
    grid = ReconGrid.from_dict(read_raw(raw).meta["grid"])
    assert img.shape == (24, 24, 24) and np.allclose(img.affine, grid.affine, atol=1e-4)
    assert nib.load(anat / "sub-01_acq-23Na_rec-nufft_desc-complex_TSC.nii.gz").get_data_dtype() == np.complex64
    side = json.loads((anat / "sub-01_acq-23Na_rec-nufft_desc-magnitude_TSC.json").read_text(encoding="utf-8"))
    assert side["Units"] == "mM" and side["Reconstruction"]["dcf_used"] == "shells"
    assert "pynufft" in side["SoftwareVersions"] and len(side["SourcesSHA256"]["raw"]) == 64
    up = nib.load(anat / "sub-01_acq-23Na_res-4p50_desc-upsampled_TSC.nii.gz")
    t2 = nib.load(anat / "sub-01_space-23Na_desc-preproc_T2w.nii.gz")
    assert up.shape == t2.shape == (48, 48, 48) and np.allclose(up.affine, t2.affine)
    assert (anat / "sub-01_from-T2w_to-23Na_mode-image_xfm.mat").exists()
    assert (der / "sub-01" / "figures" / "sub-01_desc-qc_overlay.png").stat().st_size > 1000
    assert json.loads((der / "dataset_description.json").read_text(encoding="utf-8"))["DatasetType"] == "derivative"
    log = (der / "sub-01" / "sub-01_log.txt").read_text(encoding="utf-8")
    for step in ("reconstruct", "register", "prepare"):
        assert f"START {step}" in log and f"END {step}" in log
    assert not list(der.rglob(".staging-*")) and not list(der.rglob("*.partial*"))
    # BIDS: every written name parses with the suffix last (nilearn's parser) and its entities in BIDS order
    written = sorted(f for f in (der / "sub-01").rglob("sub-01_*") if f.suffix != ".npy") + \
        sorted((der / "sub-01" / "slices").glob("*.npy"))[:4]
    assert len(written) > 15
    for f in written:
        assert_bids_name(f)
    # Sources are BIDS URIs: the raw data through DatasetLinks, earlier derivatives of this dataset with bids::
    links = json.loads((der / "dataset_description.json").read_text(encoding="utf-8"))["DatasetLinks"]
    assert (der / links["raw"]).resolve() == raw_dir.resolve()
    assert side["Sources"] == ["bids:raw:sub-01/sub-01_acq-23Na_raw.h5"]
    reg = json.loads((anat / "sub-01_space-23Na_desc-preproc_T2w.json").read_text(encoding="utf-8"))
    assert reg["Sources"] == ["bids::sub-01/anat/sub-01_acq-23Na_rec-nufft_desc-magnitude_TSC.nii.gz",
                              "bids:raw:sub-01/dicom/T2w"]
    assert reg["SourceRoles"]["t2w"] == "bids:raw:sub-01/dicom/T2w"


def test_registration_through_dicom_recovers_the_simulated_motion(chain):
    raw_dir, der, _, _ = chain
    truth = json.loads((raw_dir / "sub-01" / "truth" / "sub-01_from-T2w_to-23Na_desc-truth_xfm.json").read_text(encoding="utf-8"))
    est = json.loads((der / "sub-01" / "anat" / "sub-01_from-T2w_to-23Na_mode-image_xfm.json").read_text(encoding="utf-8"))
    err = rigid_errors(np.array(est["fixed_to_moving_ras"]), np.array(truth["fixed_to_moving_ras"]),
                       center_mm=truth["center_mm"])
    print(f"end-to-end registration error: {err}")
    assert err["rotation_error_deg"] < 1.0 and err["translation_error_mm"] < 1.0
    assert est["Registration"]["config"]["metric"] == "mattes"


def test_prepared_slices_and_datalist(chain):
    _, der, _, _ = chain
    index = json.loads((der / "sub-01" / "sub-01_desc-slices_index.json").read_text(encoding="utf-8"))
    assert index["lesion"] is True and len(index["slices"]) == 3 * 112
    assert index["Padding"]["pad_before"] == [32, 32, 32]
    s = np.load(der / "sub-01" / index["slices"][56]["sodium"])
    assert s.shape == (112, 112) and s.dtype == np.float32 and 0 <= s.min() and s.max() <= 1
    assert index["Normalisation"]["sodium"]["max"] > 0
    padded = nib.load(der / "sub-01" / "anat" / "sub-01_acq-23Na_desc-pad112_TSC.nii.gz")
    assert padded.shape == (112, 112, 112)
    assert main(["datalist", "--root", str(der)]) == 0
    dl = json.loads((der / "datalist.json").read_text(encoding="utf-8"))
    assert len(dl["test"]) == 336 and dl["training"] == []  # the lesion subject is a test case
    assert (der / dl["test"][0]["t2w"]).exists()


def test_existing_results_are_not_overwritten(chain, capsys):
    _, der, raw, dicom = chain
    mag = der / "sub-01" / "anat" / "sub-01_acq-23Na_rec-nufft_desc-magnitude_TSC.nii.gz"
    before = mag.stat().st_mtime_ns
    code = main(["run", "--raw", str(raw), "--t2w", str(dicom), "--out", str(der), "--subject", "01"])
    err = capsys.readouterr().err
    assert code == 2 and "already holds run results" in err and "--overwrite" in err and str(der) in err
    assert err.count("\n") == 1  # one sentence
    assert mag.stat().st_mtime_ns == before
    assert main(["reconstruct", "--raw", str(raw), "--out", str(der), "--subject", "01", "--overwrite",
                 "--filter", "hamming", "--backend", "pynufft"]) == 0
    side = json.loads((der / "sub-01" / "anat" / "sub-01_acq-23Na_rec-nufft_desc-magnitude_TSC.json").read_text(encoding="utf-8"))
    assert side["Reconstruction"]["config"]["window"] == "hamming"


def test_bad_inputs_give_one_line_naming_the_file(tmp_path, chain, capsys):
    _, _, raw, dicom = chain
    r = read_raw(raw)
    r.kspace = r.kspace.copy()
    r.kspace[0, 5] = np.nan
    bad = tmp_path / "nan.npz"
    np.savez(bad, kspace=r.kspace, trajectory=r.trajectory)
    assert main(["reconstruct", "--raw", str(bad), "--out", str(tmp_path / "o"), "--subject", "01"]) == 2
    assert f"error: {bad}: the k-space data contain 1 NaN" in capsys.readouterr().err
    assert main(["run", "--raw", str(raw), "--t2w", str(tmp_path / "no_dicom"), "--out", str(tmp_path / "o"),
                 "--subject", "01"]) == 2
    assert "no_dicom: T2w image or DICOM series directory not found" in capsys.readouterr().err
    assert not (tmp_path / "o" / "sub-01" / "anat").exists()  # nothing written on failure


def test_help_and_config_file(tmp_path, capsys):
    for cmd in ("simulate", "reconstruct", "register", "prepare", "run", "datalist"):
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([cmd, "--help"])
        assert e.value.code == 0
    assert "Example" in build_parser().format_help()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("cube: 64\nnorm: slice\nbogus-option: 1\n")
    assert main(["--config", str(cfg), "prepare", "--sodium", "a.nii.gz", "--t2w", "b.nii.gz", "--out", "x",
                 "--subject", "01"]) == 2
    assert "unknown option(s) bogus_option" in capsys.readouterr().err
