"""The reliability battery: bad inputs and faults across the bundles, the ``monai-inr`` command and preprocessing,
as a hostile new user would try them (the cases of ``notes/review/reliability-cases.md`` included).

Every refusal case asserts the same three things: one sentence naming the problem (an
:class:`~monai_inr.errors.InputError`, or ``error: ...`` on one stderr line with exit code 2 from a command), nothing
written under a final output name (the output folder absent, empty, or its earlier files byte-identical; a
preprocessing step log that records the refused attempt is allowed), and every input file unchanged. The "works" cases check the outcome the review found wrong (output geometry, stale temporary
files). The kill test SIGKILLs a real training inside a checkpoint write and resumes it.

Networks are the bundles' quick networks with random weights (what is under test is the checking, not the weights);
the multi-contrast case uses the session's tiny fitted bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import nibabel as nib
import numpy as np
import pytest
import torch

from _bundle_helpers import REPO, assert_one_sentence_error
from monai_inr.errors import find_input_error
from monai_inr.evaluation.bundle import network_from_bundle, run_bundle

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.xdist_group("reliability")]

CFG = {b: [str(REPO / "bundles" / b / "configs" / f"{c}.json") for c in ("inference", "quick")]
       for b in ("arssr", "dual_arbnet", "arrfr", "nexus_inr")}
ARSSR_TRAIN = [str(REPO / "bundles" / "arssr" / "configs" / f"{c}.json") for c in ("train", "quick")]
TINY_ARSSR = {"encoder_kwargs": {"features": 8, "growth": 8, "num_blocks": 2, "num_layers": 2},
              "network_def#feature_channels": 16, "network_def#decoder_hidden": 32}
TINY_TRAIN = {"val_interval": 1, "batch_size": 2, "patches_per_volume": 2, "num_coords": 300, "val_scales": [2.0],
              "epochs": 2, **TINY_ARSSR}
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
AFFINE[:3, 3] = -30.0


# ------------------------------------------------------------------------------------------------------ inputs


def _phantom(n: int, seed: int) -> np.ndarray:
    r = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n)] * 3, indexing="ij"))
    a = np.zeros((n,) * 3, np.float32)
    for _ in range(6):
        c = r.uniform(-0.5, 0.5, 3)
        a += r.uniform(20, 100) * (np.sqrt(((g - c[:, None, None, None]) ** 2).sum(0)) < r.uniform(0.15, 0.5))
    return a + 2 * r.random(a.shape).astype(np.float32)


def _save(path: Path, data: Any, affine: np.ndarray = AFFINE, sform_only: bool = False, no_codes: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data, np.float32), None if (sform_only or no_codes) else affine)
    if no_codes:
        img.header.set_zooms(tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0)))
        img.header["qform_code"], img.header["sform_code"] = 0, 0
    elif sform_only:
        img.header["qform_code"] = 0
        img.set_sform(affine, code=1)
    else:
        img.set_qform(affine, code=1)
        img.set_sform(affine, code=1)
    nib.save(img, str(path))
    return path


@dataclass
class Inputs:
    root: Path
    ckpt: dict[str, Path] = field(default_factory=dict)

    def __getitem__(self, name: str) -> str:
        return str(self.root / name)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("reliability_inputs")
    x = _phantom(24, 0)
    _save(root / "good.nii.gz", x)
    _save(root / "good2.nii.gz", _phantom(24, 5))
    _save(root / "a" / "t1.nii.gz", x)
    _save(root / "b" / "t1.nii.gz", _phantom(24, 1))
    zero = AFFINE.copy()
    zero[2, 2] = 0.0
    _save(root / "zeropix.nii.gz", x, zero, sform_only=True)
    singular = AFFINE.copy()
    singular[:3, 2] = singular[:3, 0]
    _save(root / "singular.nii.gz", x, singular, sform_only=True)
    _save(root / "pixdim_mismatch.nii.gz", x, sform_only=True)  # sform 2 mm, pixdim field left at 1 mm
    _save(root / "nocode.nii.gz", x, no_codes=True)
    far = AFFINE.copy()
    far[:3, 3] += 2000.0
    _save(root / "far.nii.gz", x, far)
    _save(root / "d2.nii.gz", x[:, :, 0])
    _save(root / "d4.nii.gz", np.stack([x, x, x], -1))
    nan = x.copy()
    nan[3, 3, 3] = np.nan
    _save(root / "nan.nii.gz", nan)
    _save(root / "constant.nii.gz", np.ones_like(x))
    _save(root / "half.nii.gz", x[:, :, :12])
    (root / "empty.nii.gz").write_bytes(b"")
    (root / "text.nii.gz").write_text("not an image\n", encoding="utf-8")
    raw = (root / "good.nii.gz").read_bytes()
    (root / "truncated.nii.gz").write_bytes(raw[: len(raw) // 3])
    # a tiny ArSSR training set (40^3) and its faulty variants
    train = [_save(root / "train" / f"s{i}.nii.gz", _phantom(40, 10 + i)) for i in range(4)]
    nan40 = _phantom(40, 12)
    nan40[10, 10, 10] = np.nan
    bad = {"nan": _save(root / "train" / "nan.nii.gz", nan40),
           "zero": _save(root / "train" / "zero.nii.gz", np.zeros((40, 40, 40))),
           "small": _save(root / "train" / "small.nii.gz", _phantom(20, 3))}
    for name, path in {"good": train[2], **bad}.items():
        items = [{"t1w": str(train[0])}, {"t1w": str(train[1])}, {"t1w": str(path)}]
        doc = {"training": items, "validation": [{"t1w": str(train[3])}]}
        (root / "train" / f"dl_{name}.json").write_text(json.dumps(doc), encoding="utf-8")
    # random-weight checkpoints of the quick networks (what is tested is the checking, not the weights)
    inp = Inputs(root)
    for b in ("arssr", "dual_arbnet", "arrfr", "nexus_inr"):
        torch.manual_seed(0)
        net = network_from_bundle(CFG[b], {"device": "$torch.device('cpu')"})
        inp.ckpt[b] = root / "ckpt" / f"{b}.pt"
        inp.ckpt[b].parent.mkdir(exist_ok=True)
        torch.save(net.state_dict(), inp.ckpt[b])
    state = torch.load(inp.ckpt["arssr"], weights_only=True)
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = state[first].clone().fill_(float("nan"))
    torch.save(state, root / "ckpt" / "nan_weights.pt")
    blob = inp.ckpt["arssr"].read_bytes()
    (root / "ckpt" / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    torch.save(torch.nn.Linear(3, 3).state_dict(), root / "ckpt" / "other.pt")
    marker = root / "ckpt" / "PWNED"
    payload = f"import pathlib; pathlib.Path({str(marker)!r}).touch()"

    class Payload:
        def __reduce__(self):
            return (exec, (payload,))

    torch.save({"model": Payload()}, root / "ckpt" / "malicious.pt")
    return inp


def _hashes(folder: Path, logs: bool = True) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (``logs=False``: without preprocessing's step logs, ``*_log.txt``, which
    record a refused attempt as well and are not results)."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and (logs or not p.name.endswith("_log.txt"))}


# ------------------------------------------------------------------------------------------------------ the cases


@dataclass(frozen=True)
class Case:
    """One bad input or fault: ``kind`` is "bundle" (``configs`` + overrides through ``monai.bundle``), "cli"
    (``monai-inr`` arguments) or "pre" (``python -m preprocessing`` arguments); ``message`` must be in the sentence."""

    id: str
    kind: str
    message: str
    configs: tuple[str, ...] = ()
    workflow: str = "infer"
    args: dict | tuple = ()
    setup: Callable[[Inputs, Path], None] | None = None


def A(id, message, **kw):  # noqa: N802 - a table row
    base = {"ckpt_path": "{ckpt_arssr}", "input_image": "{good.nii.gz}", "scale": 2.0}
    return Case(id, "bundle", message, tuple(CFG["arssr"]), args={**base, **kw.pop("over", {})}, **kw)


def D(id, message, **kw):  # noqa: N802
    base = {"ckpt_path": "{ckpt_dual_arbnet}", "input_image": "{good.nii.gz}", "reference_image": "{good2.nii.gz}",
            "scale": 2.0}
    return Case(id, "bundle", message, tuple(CFG["dual_arbnet"]), args={**base, **kw.pop("over", {})}, **kw)


def R(id, message, **kw):  # noqa: N802
    base = {"ckpt_path": "{ckpt_arrfr}", "input_image": "{good.nii.gz}", "reference_image": "{good2.nii.gz}",
            "scale": 2.0}
    return Case(id, "bundle", message, tuple(CFG["arrfr"]), args={**base, **kw.pop("over", {})}, **kw)


def N(id, message, **kw):  # noqa: N802
    base = {"ckpt_path": "{ckpt_nexus_inr}", "t1w": "{good.nii.gz}", "t2w": "{good2.nii.gz}", "target_spacing": 1.0}
    return Case(id, "bundle", message, tuple(CFG["nexus_inr"]), args={**base, **kw.pop("over", {})}, **kw)


def T(id, message, datalist):  # noqa: N802
    return Case(id, "bundle", message, tuple(ARSSR_TRAIN), "train",
                args={**TINY_TRAIN, "datalist": "{train/dl_%s.json}" % datalist, "bundle_root": "{out}"})


def _existing_output(inp: Inputs, out: Path) -> None:
    out.mkdir(parents=True)
    (out / "good_sr.nii.gz").write_bytes(b"an earlier result")
    (out / "good_fused.nii.gz").write_bytes(b"an earlier result")


def _out_is_file(inp: Inputs, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("a file where the output folder should be\n", encoding="utf-8")


CASES = [
    # ArSSR inference: unreadable or unusable input files
    A("arssr-missing", "file not found", over={"input_image": "{missing.nii.gz}"}),
    A("arssr-empty-file", "not a readable NIfTI image", over={"input_image": "{empty.nii.gz}"}),
    A("arssr-truncated-gz", "not a readable NIfTI image", over={"input_image": "{truncated.nii.gz}"}),
    A("arssr-text-file", "not a readable NIfTI image", over={"input_image": "{text.nii.gz}"}),
    A("arssr-2d", "expected a 3D image but got 2D", over={"input_image": "{d2.nii.gz}"}),
    A("arssr-4d", "expected a 3D image but got 4D", over={"input_image": "{d4.nii.gz}"}),
    A("arssr-nan-voxel", "1 NaN or Inf voxels", over={"input_image": "{nan.nii.gz}"}),
    A("arssr-constant", "the image is constant", over={"input_image": "{constant.nii.gz}"}),
    # geometry (review defects 1 and 10)
    A("arssr-zero-voxel-size", "zero voxel size or a degenerate affine", over={"input_image": "{zeropix.nii.gz}"}),
    A("arssr-singular-sform", "zero voxel size or a degenerate affine", over={"input_image": "{singular.nii.gz}"}),
    A("arssr-bad-file-after-good", "zero voxel size", over={"input_image": ["{good.nii.gz}", "{zeropix.nii.gz}"]}),
    # scales and memory
    A("arssr-scale-0", "must be positive", over={"scale": 0.0}),
    A("arssr-scale-below-1", "does not downsample", over={"scale": 0.01}),
    A("arssr-scale-text", "scale must be one number or 3 numbers", over={"scale": "abc"}),
    A("arssr-target-spacing-0", "target_spacing must be positive", over={"scale": None, "target_spacing": 0.0}),
    A("arssr-huge-scale", "memory budget", over={"scale": 400.0}),
    A("arssr-budget-above-ram", "memory budget", over={"scale": 208.0, "memory_budget_gb": 1000.0}),
    # outputs (review defects 6 and 9)
    A("arssr-output-is-file", "is a file", setup=_out_is_file),
    A("arssr-output-under-file", "is a file", over={"output_dir": "{out}/sub"}, setup=_out_is_file),
    A("arssr-same-name-two-folders", "same file name", over={"input_image": ["{a/t1.nii.gz}", "{b/t1.nii.gz}"]}),
    A("arssr-existing-output", "already exists; pass --overwrite", setup=_existing_output),
    # checkpoints
    A("arssr-no-checkpoint", "checkpoint not found", over={"ckpt_path": "{ckpt/none.pt}"}),
    A("arssr-other-network", "checkpoint of another network", over={"ckpt_path": "{ckpt/other.pt}"}),
    A("arssr-nan-weights", "non-finite weights", over={"ckpt_path": "{ckpt/nan_weights.pt}"}),
    A("arssr-truncated-checkpoint", "not a readable PyTorch checkpoint", over={"ckpt_path": "{ckpt/truncated.pt}"}),
    A("arssr-malicious-pickle", "not a readable PyTorch checkpoint", over={"ckpt_path": "{ckpt/malicious.pt}"}),
    # Dual-ArbNet (review defect 5: the memory check came after a 23 GB allocation)
    D("dual-scale-1000", "memory budget", over={"scale": 1000.0, "max_scale": 2000.0}),
    D("dual-slice-axis-5", "slice_axis must be 0, 1 or 2", over={"slice_axis": 5}),
    D("dual-same-name", "same file name",
      over={"input_image": ["{a/t1.nii.gz}", "{b/t1.nii.gz}"], "reference_image": "{good2.nii.gz}"}),
    D("dual-zero-voxel-size", "zero voxel size", over={"input_image": "{zeropix.nii.gz}"}),
    D("dual-far-reference", "does not cover the target", over={"reference_image": "{far.nii.gz}"}),
    D("dual-no-reference", "no reference image given", over={"reference_image": ""}),
    D("dual-output-is-file", "is a file", setup=_out_is_file),
    # ArRFR (no max_scale by default)
    R("arrfr-scale-1000", "memory budget", over={"scale": 1000.0, "reference_image": "{good.nii.gz}"}),
    R("arrfr-scale-below-1", "does not downsample", over={"scale": 0.5}),
    R("arrfr-existing-output", "already exists", setup=_existing_output, over={"reference_image": "{good.nii.gz}"}),
    R("arrfr-grid-mismatch", "ArRFR needs both on one grid", over={"reference_image": "{half.nii.gz}"}),
    R("arrfr-singular-axis-1", "degenerate affine",
      over={"input_image": "{singular.nii.gz}", "reference_image": "{singular.nii.gz}", "slice_axis": 1}),
    # Nexus-INR
    N("nexus-zero-voxel-size", "zero voxel size", over={"t2w": "{zeropix.nii.gz}"}),
    N("nexus-no-overlap", "do not overlap", over={"t2w": "{far.nii.gz}"}),
    N("nexus-target-spacing-0", "target_spacing must be positive", over={"target_spacing": 0.0}),
    # ArSSR training data (review defect 2: a NaN voxel produced a NaN "best" model)
    T("train-nan-voxel", "1 NaN or Inf voxels", "nan"),
    T("train-constant-volume", "the image is constant", "zero"),
    T("train-too-small-volume", "is smaller than the 40x40x40 voxels training needs", "small"),
    # the monai-inr command
    Case("cli-scale-text", "cli", "--scale takes one number", args=("sr", "{good.nii.gz}", "--scale", "abc")),
    Case("cli-scale-below-1", "cli", "does not downsample", args=("sr", "{good.nii.gz}", "--scale", "0.5")),
    Case("cli-missing-scan", "cli", "file not found", args=("sr", "{missing.nii.gz}", "--scale", "2")),
    Case("cli-output-is-file", "cli", "is a file", args=("sr", "{good.nii.gz}", "--scale", "2"), setup=_out_is_file),
    Case("cli-fit-no-geometry", "cli", "no scanner geometry",
         args=("fit", "{nocode.nii.gz}", "{good2.nii.gz}", "--target-spacing", "2")),
    # preprocessing
    Case("pre-output-is-file", "pre", "is a file",
         args=("reconstruct", "--raw", "{raw.h5}", "--subject", "01"), setup=_out_is_file),
    Case("pre-grid-spacing-0", "pre", "grid spacing must be 3 positive numbers",
         args=("reconstruct", "--raw", "{raw_spacing0.h5}", "--subject", "01")),
    Case("pre-all-zero-kspace", "pre", "every k-space sample is 0",
         args=("reconstruct", "--raw", "{raw_zero.h5}", "--subject", "01")),
    Case("pre-run-nan-t2w", "pre", "1 NaN or Inf voxels",
         args=("run", "--raw", "{raw.h5}", "--t2w", "{nan.nii.gz}", "--subject", "01")),
    Case("pre-run-2d-t2w", "pre", "expected a 3D image but got 2D",
         args=("run", "--raw", "{raw.h5}", "--t2w", "{d2.nii.gz}", "--subject", "01")),
]


@pytest.fixture(scope="module")
def raw_data(inputs) -> Inputs:
    """A tiny simulated raw k-space file and one whose metadata asks for a grid spacing of 0."""
    import h5py

    from preprocessing.cli import main as pre_main

    sim = inputs.root / "sim"
    assert pre_main(["simulate", "--out", str(sim), "--subject", "01", "--preset", "tiny", "--seed", "0"]) == 0
    raw = sim / "sub-01" / "sub-01_acq-23Na_raw.h5"
    (inputs.root / "raw.h5").write_bytes(raw.read_bytes())
    bad = inputs.root / "raw_spacing0.h5"
    bad.write_bytes(raw.read_bytes())
    with h5py.File(bad, "r+") as f:
        meta = json.loads(f.attrs["meta"])
        meta["grid"]["spacing_mm"] = [0.0, 9.0, 9.0]
        f.attrs["meta"] = json.dumps(meta)
    silent = inputs.root / "raw_zero.h5"
    silent.write_bytes(raw.read_bytes())
    with h5py.File(silent, "r+") as f:
        f["kspace"][...] = 0
    return inputs


def _fill(value: Any, inp: Inputs, out: Path) -> Any:
    if isinstance(value, list):
        return [_fill(v, inp, out) for v in value]
    if isinstance(value, tuple):
        return tuple(_fill(v, inp, out) for v in value)
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and "'" not in value:
        key = value[1:-1]
        if key.startswith("ckpt_"):
            return str(inp.ckpt[key[5:]])
        return str(out) if key == "out" else inp[key]
    if isinstance(value, str) and value.startswith("{out}"):
        return str(out) + value[5:]
    return value


def _run_case(case: Case, inp: Inputs, out: Path, capsys) -> str:
    """Run one case; return its one sentence."""
    if case.kind == "bundle":
        overrides = {k: _fill(v, inp, out) for k, v in case.args.items()}
        overrides = {k: v for k, v in overrides.items() if v is not None or k in ("scale", "target_spacing")}
        overrides.setdefault("output_dir", str(out))
        overrides.setdefault("bundle_root", str(out.parent / f"{out.name}_root"))
        overrides["progress"] = False
        with pytest.raises(Exception) as err:
            run_bundle(list(case.configs), overrides, workflow_type=case.workflow)
        assert find_input_error(err.value) is not None, f"{case.id}: no one-sentence error: {err.value!r}"
        return assert_one_sentence_error(err.value, case.message)
    argv = [str(a) for a in _fill(case.args, inp, out)]
    capsys.readouterr()
    if case.kind == "cli":
        from monai_inr.cli import main

        argv = [*argv, "-o", str(out), "--no-progress"] if argv[0] == "sr" else [*argv, "-o", str(out)]
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse refuses a malformed option value
            rc = e.code
    else:
        from preprocessing.cli import main

        rc = main([argv[0], "--out", str(out), *argv[1:]])
    err_lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert rc == 2, (case.id, rc, err_lines)
    assert err_lines and case.message in err_lines[-1], (case.id, err_lines)
    return err_lines[-1]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input_is_one_sentence_nothing_written_inputs_unchanged(case, inputs, raw_data, tmp_path, capsys):
    out = tmp_path / "out"
    if case.setup is not None:
        case.setup(inputs, out)
    before_inputs = _hashes(inputs.root)
    before_out = _hashes(out, logs=False) if out.is_dir() else {}
    _run_case(case, inputs, out, capsys)
    if out.is_dir():  # nothing new under a final name, and what was there is unchanged
        assert _hashes(out, logs=False) == before_out, (case.id, sorted(out.rglob("*")))
    elif case.setup is _out_is_file:
        assert out.read_text(encoding="utf-8").startswith("a file")
    root = tmp_path / "out_root"
    if case.workflow == "train":  # no model, no training state
        assert not list(out.rglob("*.pt")), sorted(out.rglob("*.pt"))
    assert not root.exists() or not list(root.rglob("*.nii*")) and not list(root.rglob("*.pt"))
    assert _hashes(inputs.root) == before_inputs
    assert not (inputs.root / "ckpt" / "PWNED").exists()


def test_battery_covers_at_least_40_cases_in_every_area():
    kinds = {c.kind for c in CASES}
    areas = {c.id.split("-")[0] for c in CASES}
    assert len(CASES) >= 40 and kinds == {"bundle", "cli", "pre"}
    assert {"arssr", "dual", "arrfr", "nexus", "train", "cli", "pre"} <= areas


# ------------------------------------------------------------------------------------------------------ works-cases


def _infer_arssr(inp: Inputs, image: str, out: Path, **kw) -> None:
    run_bundle(CFG["arssr"], {"ckpt_path": str(inp.ckpt["arssr"]), "input_image": image, "scale": 2.0,
                              "output_dir": str(out), "bundle_root": str(out), "progress": False, **kw},
               workflow_type="infer")


def _corners(shape, affine) -> np.ndarray:
    from monai_inr import coords

    return coords.fov_corners(np.asarray(shape), np.asarray(affine, np.float64))


def test_a_valid_sform_with_a_disagreeing_pixdim_field_keeps_its_field_of_view(inputs, tmp_path):
    """Review case 28: MONAI's header rectification moved this output by 30.5 mm; the sform rules now."""
    _infer_arssr(inputs, inputs["pixdim_mismatch.nii.gz"], tmp_path)
    src = nib.load(inputs["pixdim_mismatch.nii.gz"])
    out = nib.load(str(tmp_path / "pixdim_mismatch_sr.nii.gz"))
    np.testing.assert_allclose(_corners(out.shape, out.affine), _corners(src.shape, src.affine), atol=1e-4)
    # Dual-ArbNet, which read through LoadImaged too, keeps it as well (in-plane x2, the slice axis untouched)
    run_bundle(CFG["dual_arbnet"], {"ckpt_path": str(inputs.ckpt["dual_arbnet"]), "scale": 2.0,
                                    "input_image": inputs["pixdim_mismatch.nii.gz"],
                                    "reference_image": inputs["good2.nii.gz"], "output_dir": str(tmp_path / "d"),
                                    "bundle_root": str(tmp_path)}, workflow_type="infer")
    dual = nib.load(str(tmp_path / "d" / "pixdim_mismatch_sr.nii.gz"))
    assert dual.shape == (48, 48, 24)
    np.testing.assert_allclose(_corners(dual.shape, dual.affine), _corners(src.shape, src.affine), atol=1e-4)


def test_an_input_without_scanner_geometry_stays_unknown_and_outputs_say_how_they_were_made(inputs, tmp_path):
    """Review case 30: codes 0/0 came out as codes 1/1 (claiming scanner space); the header now records the scale."""
    _infer_arssr(inputs, inputs["nocode.nii.gz"], tmp_path)
    out = nib.load(str(tmp_path / "nocode_sr.nii.gz"))
    assert int(out.header["qform_code"]) == 0 and int(out.header["sform_code"]) == 0
    np.testing.assert_allclose(out.header.get_zooms(), (1.0, 1.0, 1.0))
    assert out.header["descrip"].tobytes().rstrip(b"\0") == b"monai-inr sr x2.00x2.00x2.00 1.000x1.000x1.000mm"
    _infer_arssr(inputs, inputs["good.nii.gz"], tmp_path)
    good = nib.load(str(tmp_path / "good_sr.nii.gz"))
    assert int(good.header["sform_code"]) == 1 and int(good.header["qform_code"]) == 1


def test_temporaries_left_by_killed_writers_are_removed_by_the_next_run(inputs, tmp_path):
    """Review defect 12: a killed inference's ``.partial`` file and a killed preprocessing run's staging folder."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process id that has exited
    out = tmp_path / "sr"
    out.mkdir()
    stale = out / f".good_sr.nii.gz.{pid}.abc123.partial.nii.gz"
    stale.write_bytes(b"half an image")
    live = out / f".other_sr.nii.gz.{os.getpid()}.abc123.partial.nii.gz"  # this process: still writing
    live.write_bytes(b"being written")
    _infer_arssr(inputs, inputs["good.nii.gz"], out)
    assert not stale.exists() and live.exists() and (out / "good_sr.nii.gz").is_file()

    from preprocessing.outputs import Staging

    derivatives = tmp_path / "derivatives"
    dead_stage = derivatives / f".staging-{pid}-prepare-x1y2"
    (dead_stage / "slices").mkdir(parents=True)
    (dead_stage / "slices" / "a.npy").write_bytes(b"0")
    legacy = derivatives / ".staging-prepare-old"  # no process id in the name: left alone
    legacy.mkdir()
    with Staging(derivatives, "reconstruct") as stage:
        assert not dead_stage.exists() and legacy.exists()
        assert stage.dir.name.startswith(f".staging-{os.getpid()}-reconstruct-")
        stage.path(derivatives / "x.txt").write_text("x", encoding="utf-8")
        stage.commit()
    assert (derivatives / "x.txt").is_file()


def test_a_file_name_with_a_comma_is_one_input(inputs, tmp_path):
    """Review section 14: a comma in an --input_image file name split the path ("img/scan: file not found")."""
    src = tmp_path / "in" / "scan,1.nii.gz"
    src.parent.mkdir()
    src.write_bytes((inputs.root / "good.nii.gz").read_bytes())
    _infer_arssr(inputs, str(src), tmp_path / "out")
    assert (tmp_path / "out" / "scan,1_sr.nii.gz").is_file()


def test_swapped_contrasts_are_refused_by_the_fitted_multi_contrast_inr(trained_bundle, tmp_path):
    """Review defect 7: swapped --contrast1/--contrast2 wrote each head under the other contrast's name."""
    t = trained_bundle("multi_contrast_inr")
    files = [str(REPO / "bundles" / "multi_contrast_inr" / "configs" / f"{c}.json") for c in ("inference", "quick")]
    c1, c2 = t.overrides["contrast1"], t.overrides["contrast2"]
    overrides = {k: v for k, v in t.overrides.items() if k not in ("contrast1", "contrast2")}
    with pytest.raises(Exception) as err:
        run_bundle(files, {**overrides, "bundle_root": str(t.root), "contrast1": c2, "contrast2": c1,
                           "target_spacing": 2.0, "output_dir": str(tmp_path / "out")}, workflow_type="infer")
    assert_one_sentence_error(err.value, "swapped order")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


# ------------------------------------------------------------------------------------------------------ kill test

_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, json, logging
    import torch
    from monai_inr.evaluation.bundle import run_bundle
    logging.basicConfig(level=logging.INFO)
    configs, overrides, kill_at = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
    if kill_at:
        real_save, calls = torch.save, []

        def dying_save(obj, f, *a, **k):  # the kill_at-th training-state write dies halfway through the file
            if isinstance(obj, dict) and "optimizer" in obj:
                calls.append(1)
                if len(calls) == kill_at:
                    real_save(obj, f, *a, **k)
                    size = os.path.getsize(f)
                    with open(f, "r+b") as fh:
                        fh.truncate(size // 2)
                    os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *a, **k)

        torch.save = dying_save
    run_bundle(configs, overrides, workflow_type="train")
""")


def test_sigkill_inside_a_checkpoint_write_loses_nothing_and_the_rerun_resumes(inputs, tmp_path):
    """A real ArSSR training is killed while it writes its training state after epoch 3: the best model and the
    epoch-2 state stay complete, the rerun of the same command resumes at epoch 3 (not 0), removes the dead
    process's temporary file, and never replaces the best model with a worse one."""
    root = tmp_path / "bundle"
    overrides = {**TINY_TRAIN, "epochs": 4, "bundle_root": str(root), "datalist": inputs["train/dl_good.json"],
                 "progress": False}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def run(kill_at: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", _KILL_SCRIPT, json.dumps(ARSSR_TRAIN), json.dumps(overrides),
                               str(kill_at)], capture_output=True, text=True, encoding="utf-8", errors="replace", env=env,
                              timeout=900, cwd=tmp_path)

    first = run(kill_at=3)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    models = root / "models"
    assert [p.name for p in models.glob(".training_state.pt.*.partial*")], sorted(models.iterdir())
    state = torch.load(models / "training_state.pt", weights_only=True)  # the epoch-2 state, complete
    assert state["epoch"] == 2
    best = torch.load(models / "model.pt", weights_only=True)  # complete and finite
    assert all(torch.isfinite(v).all() for v in best.values() if v.is_floating_point())
    best_before = state["best_metric"]

    second = run(kill_at=0)
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert "resumed from" in log and "at epoch 2" in log, log[-3000:]
    assert not list(models.glob(".*.partial*")), sorted(models.iterdir())
    final = torch.load(models / "training_state.pt", weights_only=True)
    assert final["epoch"] == 4 and final["best_metric"] >= best_before
    torch.load(models / "model.pt", weights_only=True)
