"""The MONAI Label super-resolution app (apps/monailabel): its plain core without MONAI Label, then the infer task and
the app through ``monailabel`` itself when it is installed (it is not a project dependency: it pins a CUDA torch and
torchvision; see apps/monailabel/README.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from monai_inr import coords
from monai_inr.errors import InputError
from monai_inr.networks.nets import ArSSR

APP = Path(__file__).resolve().parents[1] / "apps" / "monailabel"
if str(APP) not in sys.path:
    sys.path.insert(0, str(APP))

from lib import core  # noqa: E402

SMALL = {"features": 8, "growth": 4, "num_blocks": 1, "num_layers": 2}
SHAPE = (9, 8, 6)


def small_net(seed: int) -> ArSSR:
    torch.manual_seed(seed)
    return ArSSR("RDN", feature_channels=8, decoder_hidden=16, encoder_kwargs=SMALL, output_activation=None).eval()


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """An oblique, anisotropic scan (2 x 2 x 3.5 mm, rotated, off-centre) with a non-[0, 1] intensity range."""
    rng = np.random.default_rng(0)
    data = (rng.random(SHAPE) * 300 + 50).astype(np.float32)
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([2.0, 2.0, 3.5])
    affine[:3, 3] = [-20.0, 14.0, 33.0]
    path = tmp_path_factory.mktemp("scan") / "t1w.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path, data, affine


def expected(net: ArSSR, data: np.ndarray, scale) -> np.ndarray:
    """The eager network's whole-grid forward on the normalised scan, mapped back to the scan's range."""
    lo, hi = float(data.min()), float(data.max())
    x = torch.as_tensor((data - lo) / (hi - lo))[None, None]
    with torch.no_grad():
        y = net(x, scale=scale)[0, 0].numpy()
    return y * (hi - lo) + lo


def check_output(path, data, affine, out_shape, values) -> None:
    img = nib.load(str(path))
    img = nib.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header)  # in memory: the file can go
    assert img.get_data_dtype() == np.float32 and img.shape == tuple(out_shape)
    np.testing.assert_allclose(img.affine, coords.fov_affine(affine, SHAPE, out_shape), atol=1e-5)
    # the field of view is kept: the outer corner of the first voxel and the physical centre do not move
    for a, n in ((affine, SHAPE), (img.affine, out_shape)):
        centre = a[:3, :3] @ ((np.asarray(n) - 1) / 2) + a[:3, 3]
        np.testing.assert_allclose(centre, affine[:3, :3] @ ((np.asarray(SHAPE) - 1) / 2) + affine[:3, 3], atol=1e-4)
    np.testing.assert_allclose(np.asarray(img.dataobj), values, rtol=1e-4, atol=1e-3)
    if Path(path).name.startswith("sr_"):  # the task's temporary result (the MONAI Label server removes it)
        Path(path).unlink()


def test_grid_request_reads_what_clients_send():
    assert core.grid_request({}) == {"scale": 2.0}
    assert core.grid_request({"scale": "2.5"}) == {"scale": 2.5}
    assert core.grid_request({"scale": "[1, 1, 2]"}) == {"scale": [1.0, 1.0, 2.0]}
    assert core.grid_request({"scale": "1,1,2"}) == {"scale": [1.0, 1.0, 2.0]}
    assert core.grid_request({"target_spacing": 1, "scale": None}) == {"target_spacing": 1.0}
    with pytest.raises(InputError, match="not both"):
        core.grid_request({"scale": 2, "target_spacing": 1})
    with pytest.raises(InputError, match="not a number"):
        core.grid_request({"scale": "twice"})


def test_core_super_resolves_to_a_float_volume_on_the_sr_grid(scan, tmp_path):
    path, data, affine = scan
    net = small_net(0)
    out, info = core.run(path, net, tmp_path / "sr.nii.gz", {"scale": "[2, 1.5, 2.5]"}, chunk_size=97)
    out_shape = (18, 12, 15)
    assert info["output_shape"] == list(out_shape) and info["scale"] == [2.0, 1.5, 2.5]
    check_output(out, data, affine, out_shape, expected(net, data, [2.0, 1.5, 2.5]))
    # a target spacing: 2 x 2 x 3.5 mm to 1 mm -> per-axis scales 2, 2, 3.5
    out, info = core.run(path, net, tmp_path / "sr1mm.nii.gz", {"target_spacing": "1.0"})
    assert info["output_shape"] == [18, 16, 21]
    np.testing.assert_allclose(info["output_spacing"], [1.0, 1.0, 1.0], atol=1e-6)
    check_output(out, data, affine, (18, 16, 21), expected(net, data, [2.0, 2.0, 3.5]))


def test_monailabel_infer_task_and_app(scan, tmp_path):
    pytest.importorskip("monailabel")
    from monailabel.interfaces.tasks.infer_v2 import InferType

    from lib.infers import SuperResolution

    path, data, affine = scan
    trained = small_net(1)
    ckpt = tmp_path / "model.pt"
    torch.save(trained.state_dict(), ckpt)
    task = SuperResolution(str(ckpt), small_net(2), scale=2.0)  # other initial weights: the checkpoint must load
    assert task.type == InferType.OTHERS and not task.labels and task.dimension == 3
    # MONAI Label's Restored (monailabel.transform.post, which needs shapely) would resample back to the input grid
    assert not any(type(t).__name__ == "Restored" for t in task.post_transforms({}))

    result, info = task({"image": str(path), "device": "cpu", "scale": "[2, 1.5, 2.5]"})
    check_output(result, data, affine, (18, 12, 15), expected(trained, data, [2.0, 1.5, 2.5]))
    assert info["output_shape"] == [18, 12, 15] and not info["label_names"]
    result, info = task({"image": str(path), "device": "cpu"})  # the task's default scale
    check_output(result, data, affine, (18, 16, 12), expected(trained, data, 2.0))
    result, info = task({"image": str(path), "device": "cpu", "target_spacing": 1.0})
    check_output(result, data, affine, (18, 16, 21), expected(trained, data, [2.0, 2.0, 3.5]))

    # the app: a studies folder, the task registered, the result not saved as a label of the input (another grid)
    from main import MONAIINRApp

    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "t1w.nii.gz").write_bytes(Path(path).read_bytes())
    app = MONAIINRApp(str(APP), str(studies), {"model_path": str(tmp_path / "none.pt"), "allow_untrained": "true"})
    assert list(app.info()["models"]) == ["super_resolution"]
    assert app.info()["models"]["super_resolution"]["type"] == "others"
    app._infers["super_resolution"] = task
    out = app.infer({"model": "super_resolution", "image": "t1w", "device": "cpu", "scale": 2, "save_label": True})
    check_output(out["file"], data, affine, (18, 16, 12), expected(trained, data, 2.0))
    assert out["label"] == out["file"] and not list((studies / "labels").rglob("*.nii*"))
    assert MONAIINRApp(str(APP), str(studies), {"model_path": str(tmp_path / "none.pt")}).info()["models"] == {}
