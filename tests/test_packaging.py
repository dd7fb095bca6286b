"""Model-zoo readiness: ``monai_inr`` builds as a wheel whose version is the one every bundle's metadata pins, and a
bundle folder copied out of the repository runs with the package installed (from inside the folder, the model-zoo
way: its own ``models/model.pt``, outputs under its own ``eval/``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import monai_inr
from _bundle_helpers import REPO

BUNDLES = ("arssr", "dual_arbnet", "multi_contrast_inr", "nexus_inr", "arrfr")


def test_the_wheel_carries_both_packages_the_schema_the_commands_and_the_pinned_version(tmp_path):
    # setuptools builds inside the source folder (build/, *.egg-info): build from a copy, never in the checkout
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    for package in ("monai_inr", "preprocessing"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(tmp_path), str(source)], capture_output=True, text=True, encoding="utf-8",
                          errors="replace", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("monai_inr-*.whl")
    assert wheel.name.startswith(f"monai_inr-{monai_inr.__version__}-")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        entry = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode("utf-8")
        version = next(line.split(":", 1)[1].strip() for line in z.read(meta).decode("utf-8").splitlines()
                       if line.startswith("Version:"))
    assert {"monai_inr/__init__.py", "monai_inr/cli.py", "monai_inr/schema/metadata_schema.json",
            "preprocessing/cli.py"} <= names
    assert not any(n.startswith(("tests/", "bundles/")) for n in names)
    assert "monai-inr = monai_inr.cli:main" in entry and "sodium-preproc = preprocessing.cli:main" in entry
    for name in BUNDLES:  # every bundle pins the version the wheel carries
        pinned = json.loads((REPO / "bundles" / name / "configs" / "metadata.json").read_text(encoding="utf-8"))
        assert pinned["required_packages_version"]["monai_inr"] == version == monai_inr.__version__


def test_a_bundle_folder_copied_out_of_the_repository_runs_with_the_package_installed(tmp_path):
    bundle = tmp_path / "downloads" / "arssr"
    shutil.copytree(REPO / "bundles" / "arssr", bundle, ignore=shutil.ignore_patterns("runs", "eval", "data"))
    if not (bundle / "models" / "model.pt").is_file():
        pytest.skip("the ArSSR bundle's shipped weights are not in this checkout")
    scan = tmp_path / "scan.nii.gz"
    rng = np.random.default_rng(0)
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = (-11.0, 4.0, 7.5)
    nib.save(nib.Nifti1Image(rng.random((10, 12, 8)).astype(np.float32), affine), str(scan))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "monai.bundle", "run", "inference", "--config_file", "configs/inference.json",
           "--input_image", str(scan), "--scale", "2", "--progress", "false"]
    proc = subprocess.run(cmd, cwd=bundle, capture_output=True, text=True, encoding="utf-8", errors="replace",
                          env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = nib.load(str(bundle / "eval" / "inference" / "scan_sr.nii.gz"))
    assert out.shape == (20, 24, 16)
    np.testing.assert_allclose(out.affine[:3, :3], np.diag([1.0, 1.0, 1.5]), atol=1e-6)
    assert not (tmp_path / "downloads" / "eval").exists() and not (bundle / "runs").exists()


def test_install_gives_the_cpu_torch_and_pins_everything_from_one_constraints_file():
    """``make install`` installs the pinned CPU torch first, then the package and its test extra under the one
    constraints file; nothing pulls torchvision (it does not import beside the CPU torch), and every dependency the
    package and its extras name is pinned there (an unpinned torch would pull gigabytes of CUDA wheels)."""
    import configparser
    import re

    pins = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name.lower())] = version
    assert pins["torch"] == "2.13.0" and "torchvision" not in pins
    make = (REPO / "Makefile").read_text(encoding="utf-8")
    torch_line = make.index("pip install -q -c constraints.txt torch==2.13.0")
    assert torch_line < make.index('pip install -q -c constraints.txt -e ".[test]"')
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg", encoding="utf-8")
    names = cfg["options"]["install_requires"].split() + [
        n for extra in cfg["options.extras_require"].values() for n in extra.split()]
    names = {re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[ ]", n)[0].lower()) for n in names if n and n[0].isalpha()}
    assert "torchvision" not in names
    unpinned = sorted(n for n in names if n not in pins)
    assert not unpinned, f"dependencies without a pin in constraints.txt: {unpinned}"
