"""What every bundle test checks the same way: the bundle's files, one-sentence input errors, a torchrun run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from monai_inr.errors import find_input_error

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "monai_inr" / "schema" / "metadata_schema.json"


@dataclass(frozen=True)
class BundleFiles:
    """Paths of one bundle under ``bundles/<name>``: ``files.config("train")`` is ``configs/train.json``."""

    name: str

    @property
    def root(self) -> Path:
        return REPO / "bundles" / self.name

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    @property
    def meta(self) -> str:
        return str(self.configs / "metadata.json")

    @property
    def logging(self) -> str:
        return str(self.configs / "logging.conf")

    def config(self, stem: str) -> str:
        return str(self.configs / f"{stem}.json")


def assert_one_sentence_error(error: BaseException, message: str) -> str:
    """The :class:`~monai_inr.errors.InputError` behind ``error`` is one sentence that contains ``message``."""
    sentence = str(find_input_error(error))
    assert message in sentence and "\n" not in sentence and sentence.endswith("."), sentence
    return sentence


def assert_empty_or_absent(folder: Path) -> None:
    """Nothing was half-written: ``folder`` does not exist or holds no file."""
    assert not folder.exists() or not any(folder.iterdir()), sorted(folder.iterdir())


def bundle_cli_args(overrides: dict[str, Any]) -> list[str]:
    """``--key value`` pairs as ``python -m monai.bundle run`` parses them (strings as they are, the rest as JSON)."""
    args: list[str] = []
    for k, v in overrides.items():
        args += [f"--{k}", v if isinstance(v, str) else json.dumps(v)]
    return args


def run_torchrun_training(
    files: BundleFiles, config_files: Sequence[str], overrides: dict[str, Any], cwd: Path, model: Path
) -> dict[str, torch.Tensor]:
    """Run ``run training`` under ``torch.distributed.run`` with 2 CPU (gloo) processes; return the saved state dict,
    checked to be a plain one (no DDP ``module.`` prefix)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
           "-m", "monai.bundle", "run", "training", "--config_file", json.dumps(list(config_files)),
           "--meta_file", files.meta, "--logging_file", files.logging, *bundle_cli_args(overrides)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = torch.load(model, weights_only=True)
    assert state and not any(k.startswith("module.") for k in state)
    return state
