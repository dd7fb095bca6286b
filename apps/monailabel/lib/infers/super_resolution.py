"""MONAI Label infer task: arbitrary-scale super-resolution of a whole volume with an implicit network (ArSSR).

Unlike MONAI Label's generic bundle task (a segmentation: labels from the network's channels, and ``Restored``
resampling the prediction back onto the input grid, which would undo the super-resolution), this task

* is of type ``OTHERS`` with no labels;
* takes the output grid from the request: ``scale`` (one number or one per axis) or ``target_spacing`` (mm), else
  the task's default scale;
* encodes the volume once and queries the output grid in chunks (:class:`monai_inr.inferers.ImplicitInferer`, bounded
  memory, tiled encoder for large inputs);
* returns a float32 NIfTI whose affine is the super-resolved grid's (same field of view and physical centre).

Everything but the MONAI Label plumbing is in :mod:`lib.core`.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from typing import Any, Callable, Dict, Sequence, Tuple

import torch
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask
from monai.inferers import Inferer

from lib import core

logger = logging.getLogger(__name__)


class SuperResolution(BasicInferTask):
    """Super-resolve the request's image at ``scale`` or ``target_spacing`` (request values override the defaults).

    Args:
        path: checkpoint(s) (``bundles/arssr/models/model.pt``); a missing file means the network's own weights.
        network: the network to load the weights into (a checkpoint that carries its network definition builds
            that network instead).
        scale: default scale when the request names neither ``scale`` nor ``target_spacing``.
        chunk_size, memory_budget_gb: :class:`~monai_inr.inferers.ImplicitInferer` settings.
    """

    def __init__(
        self,
        path: str | Sequence[str] | None,
        network: torch.nn.Module,
        scale: float | Sequence[float] = 2.0,
        chunk_size: int = 65536,
        memory_budget_gb: float | None = None,
        description: str = "Arbitrary-scale MRI super-resolution (ArSSR, implicit neural representation)",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            path=path,
            network=network,
            type=InferType.OTHERS,
            labels=None,
            dimension=3,
            description=description,
            config={"scale": scale, "target_spacing": None},
            **kwargs,
        )
        self.default_scale = scale
        self.chunk_size = int(chunk_size)
        self.memory_budget_gb = memory_budget_gb

    def grid(self, data: Dict[str, Any]) -> Dict[str, Any]:
        """The request's output grid: its ``target_spacing`` if given, else its ``scale`` (the task's default)."""
        request = dict(data)
        if request.get("target_spacing") not in (None, "", "null", "None"):
            request["scale"] = None  # the config's default scale must not clash with a requested spacing
        return core.grid_request(request, self.default_scale)

    def pre_transforms(self, data=None) -> Sequence[Callable]:
        return core.pre_transforms(self.input_key)

    def inferer(self, data=None) -> Inferer:
        return core.make_inferer(self.grid(data or {}), self.chunk_size, self.memory_budget_gb)

    def inverse_transforms(self, data=None):
        return None  # nothing is inverted: the output lives on the super-resolved grid

    def post_transforms(self, data=None) -> Sequence[Callable]:
        return core.post_transforms(self.output_label_key, self.input_key)  # no Restored: it would undo the SR

    def _get_network(self, device, data):
        """The network with the checkpoint's weights (or its own when no checkpoint exists), cached per device."""
        path = self.get_path()
        stamp = os.stat(path).st_mtime if path else 0
        cached = self._networks.get(device)
        if cached is not None and cached[1] == stamp:
            return cached[0]
        network = core.load_network(copy.deepcopy(self.network), path, device)
        self._networks[device] = (network, stamp)
        return network

    def writer(self, data: Dict[str, Any], extension=None, dtype=None) -> Tuple[Any, Any]:
        """A float32 NIfTI with the super-resolved grid's affine, and the grid as the result JSON."""
        fd, name = tempfile.mkstemp(suffix=".nii.gz", prefix="sr_")
        os.close(fd)
        core.write_volume(data[self.output_label_key], name)
        return name, core.result_info(data, self.grid(data), self.input_key, self.output_label_key)
