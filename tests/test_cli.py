"""The ``monai-inr`` command: super-resolution with the shipped weights (NIfTI and DICOM in), the multi-contrast fit,
TorchScript export, and one sentence before any compute for bad input or outputs that would be lost."""

import argparse
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_inr import coords
from monai_inr.cli import main, parse_scale

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "bundles" / "arssr" / "models" / "model.pt"

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not SHIPPED.is_file(), reason="the ArSSR bundle's shipped weights are not in this checkout"),
]


def _scan(path: Path, shape=(12, 14, 10), spacing=(2.0, 2.0, 2.5), seed=0) -> Path:
    """A smooth blob volume with an oblique, offset affine."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"), -1)
    vol = np.exp(-4 * (grid**2).sum(-1)) + 0.05 * rng.random(shape)
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag(spacing)
    affine[:3, 3] = (-20.0, 7.0, 3.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(vol.astype(np.float32), affine), str(path))
    return path


def _fov(shape, affine):
    return coords.fov_corners(np.asarray(shape), np.asarray(affine, np.float64))


def test_parse_scale_accepts_one_or_three_positive_numbers():
    assert parse_scale("2.5") == 2.5
    assert parse_scale("1,1,4") == [1.0, 1.0, 4.0]
    assert parse_scale("[1, 2, 3]") == [1.0, 2.0, 3.0]
    for bad in ("abc", "0", "-2", "1,2", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_scale(bad)


def test_sr_with_the_shipped_weights_keeps_the_field_of_view(tmp_path, capsys):
    scan = _scan(tmp_path / "in" / "scan.nii.gz")
    out = tmp_path / "out"
    assert main(["sr", str(scan), "--scale", "2,2,1.5", "-o", str(out), "--no-progress"]) == 0
    sr = nib.load(str(out / "scan_sr.nii.gz"))
    src = nib.load(str(scan))
    assert sr.shape == (24, 28, 15)
    np.testing.assert_allclose(_fov(sr.shape, sr.affine), _fov(src.shape, src.affine), atol=1e-4)
    np.testing.assert_allclose(coords.spacing_from_affine(sr.affine), (1.0, 1.0, 2.5 / 1.5), rtol=1e-6)
    assert np.isfinite(sr.get_fdata()).all() and sr.get_fdata().std() > 0
    assert str(out / "scan_sr.nii.gz") in capsys.readouterr().out
    # a rerun refuses to replace the result, names it, and leaves it untouched; --overwrite replaces it
    before = (out / "scan_sr.nii.gz").stat().st_mtime_ns
    assert main(["sr", str(scan), "--scale", "3", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "scan_sr.nii.gz: already exists" in err[0]
    assert (out / "scan_sr.nii.gz").stat().st_mtime_ns == before
    assert main(["sr", str(scan), "--target-spacing", "1.0", "-o", str(out), "--overwrite", "--no-progress"]) == 0
    np.testing.assert_allclose(coords.spacing_from_affine(nib.load(str(out / "scan_sr.nii.gz")).affine), 1.0,
                               rtol=0.05)


def test_sr_reads_a_dicom_series(tmp_path):
    from preprocessing.dicom import write_dicom_series

    nifti = nib.load(str(_scan(tmp_path / "scan.nii.gz", shape=(12, 12, 8))))
    series = write_dicom_series(np.asarray(nifti.dataobj), nifti.affine, tmp_path / "t1w_series", description="T1w")
    assert main(["sr", str(series), "--scale", "2", "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    sr = nib.load(str(tmp_path / "out" / "t1w_series_sr.nii.gz"))
    assert sr.shape == (24, 24, 16)
    np.testing.assert_allclose(_fov(sr.shape, sr.affine), _fov(nifti.shape, nifti.affine), atol=1e-3)


def test_sr_warns_outside_the_trained_scales(tmp_path, caplog):
    scan = _scan(tmp_path / "scan.nii.gz", shape=(6, 6, 6))
    with caplog.at_level("WARNING"):
        assert main(["sr", str(scan), "--scale", "6", "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    assert any("outside the scales these weights were trained on" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("case", ["same-name", "output-is-a-file", "missing-input", "nan-weights-path"])
def test_sr_refuses_in_one_sentence_before_any_compute(tmp_path, capsys, case):
    a = _scan(tmp_path / "a" / "scan.nii.gz")
    out = tmp_path / "out"
    args = ["sr", str(a), "--scale", "2", "-o", str(out)]
    if case == "same-name":  # two inputs would write one output name
        args.insert(2, str(_scan(tmp_path / "b" / "scan.nii.gz", seed=1)))
        expect = "would overwrite the output of"
    elif case == "output-is-a-file":
        out.write_text("not a folder", encoding="utf-8")
        expect = "is a file"
    elif case == "missing-input":
        args[1] = str(tmp_path / "nope.nii.gz")
        expect = "nope.nii.gz"
    else:
        args += ["--weights", str(tmp_path / "missing.pt")]
        expect = "checkpoint not found"
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert not out.is_dir() or not any(out.iterdir())


def test_fit_writes_both_contrasts_on_the_reference_grid(trained_bundle, tmp_path, capsys):
    item = trained_bundle("multi_contrast_inr").extra["item"]
    out = tmp_path / "fit"
    ref = nib.load(item["label1"])
    argv = ["fit", item["contrast1"], item["contrast2"], "--reference", item["label1"], "-o", str(out),
            "--profile", "quick", "--epochs", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-2:]  # the fit logs its epochs before the two paths
    assert [Path(p).parent for p in printed] == [out, out] and (out / "models" / "model.pt").is_file()
    for path in printed:
        img = nib.load(path)
        assert img.shape == ref.shape
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
        assert np.isfinite(img.get_fdata()).all()
    # the model and images are never silently replaced; --overwrite refits and rewrites them (earlier model kept aside)
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(argv + ["--overwrite", "--slice-profile", "gaussian"]) == 0  # the sequence's slice profile
    assert len(list((out / "models").glob("model.*.pt"))) == 1


def test_export_scripts_the_shipped_network_correct_at_any_size(tmp_path):
    out = tmp_path / "arssr.ts"
    assert main(["export", "arssr", "-o", str(out)]) == 0
    scripted = torch.jit.load(str(out))
    from monai_inr.engines import network_from_checkpoint

    eager = network_from_checkpoint(None, SHIPPED, "cpu").eval()
    x = torch.rand(1, 1, 10, 9, 7)
    with torch.no_grad():
        y_eager = eager(x)
        y = scripted(x)
    assert y.shape == y_eager.shape == (1, 1, 20, 18, 14)
    torch.testing.assert_close(y, y_eager, rtol=1e-4, atol=1e-4)
    assert main(["export", "arssr", "-o", str(out)]) == 2  # exists: refused without --overwrite
    assert os.path.getsize(out) > 0
