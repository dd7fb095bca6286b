"""MONAI Label app serving monai-inr's arbitrary-scale super-resolution (ArSSR).

Start it with ``monailabel start_server --app apps/monailabel --studies <folder of scans>`` (optional
``--conf model_path <model.pt>``, ``--conf scale 2.0``) and request ``model=super_resolution`` with ``scale`` or
``target_spacing`` in the parameters. See README.md.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask

from lib.infers import SuperResolution

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "bundles" / "arssr" / "models" / "model.pt"


def arssr_network():
    """The ArSSR network of the bundle's ``inference.json`` (a checkpoint that carries its own definition wins)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "arssr" / "configs" / "inference.json"))
    parser["bundle_root"] = str(REPO / "bundles" / "arssr")
    return parser.get_parsed_content("network_def")


class MONAIINRApp(MONAILabelApp):
    """One infer task, ``super_resolution``; results are never saved as labels of the input (another grid)."""

    def __init__(self, app_dir: str, studies: str, conf: Dict[str, str]):
        self.model_path = Path(conf.get("model_path", DEFAULT_MODEL))
        self.scale = float(conf.get("scale", 2.0))
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="monai-inr",
                         description="Arbitrary-scale MRI super-resolution with implicit neural representations",
                         version="0.1.0")

    def init_infers(self) -> Dict[str, InferTask]:
        allow_untrained = str(self.conf.get("allow_untrained", "false")).lower() == "true"
        if not self.model_path.is_file() and not allow_untrained:
            logger.warning(f"{self.model_path}: no ArSSR weights; train the arssr bundle (or pass --conf model_path) "
                           f"to enable super_resolution.")
            return {}
        path = str(self.model_path) if self.model_path.is_file() else None
        return {"super_resolution": SuperResolution(path, arssr_network(), scale=self.scale)}

    def infer(self, request: Dict[str, Any], datastore=None):
        if request.get("model") == "super_resolution":
            request = {**request, "save_label": False}  # a volume on another grid, not a label of the input
        return super().infer(request, datastore)


def main():  # pragma: no cover - manual run: python apps/monailabel/main.py --studies <folder> --image <id>
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", required=True)
    parser.add_argument("--image", required=True)
    parser.add_argument("--scale", default=None)
    parser.add_argument("--target_spacing", default=None)
    args = parser.parse_args()
    app = MONAIINRApp(os.path.dirname(__file__), args.studies, {"allow_untrained": "true"})
    request = {"model": "super_resolution", "image": args.image, "device": "cpu"}
    request.update({k: v for k, v in (("scale", args.scale), ("target_spacing", args.target_spacing)) if v})
    print(json.dumps(app.infer(request), indent=2, default=str))


if __name__ == "__main__":  # pragma: no cover
    main()
