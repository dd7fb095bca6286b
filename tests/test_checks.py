import nibabel as nib
import numpy as np
import pytest
import torch

from monai_inr.engines.checks import as_file_list, load_checkpoint, validate_inputs, validate_scale
from monai_inr.errors import InputError


def test_file_lists():
    assert as_file_list("a.nii.gz") == ["a.nii.gz"]
    assert as_file_list("a.nii.gz, b.nii") == ["a.nii.gz", "b.nii"]
    assert as_file_list(["a", "b"]) == ["a", "b"]
    with pytest.raises(InputError, match="no input image"):
        as_file_list("")


def test_validate_inputs_names_the_bad_file(tmp_path):
    good = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(4, 4, 4).astype(np.float32), np.eye(4)), str(good))
    assert validate_inputs([str(good)]) == [str(good)]
    with pytest.raises(InputError, match="missing.nii.gz: file not found"):
        validate_inputs([str(good), str(tmp_path / "missing.nii.gz")])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one"),
        ({"scale": 2, "target_spacing": 1}, "exactly one"),
        ({"scale": 0}, "positive"),
        ({"scale": -2}, "positive"),
        ({"target_spacing": [1, 1]}, "one number or 3"),
        ({"scale": 9, "max_scale": 8}, "supported maximum"),
    ],
)
def test_validate_scale(kwargs, message):
    with pytest.raises(InputError, match=message):
        validate_scale(**kwargs)


def test_validate_scale_accepts_per_axis():
    validate_scale(scale=[1, 2, 4])
    validate_scale(target_spacing=0.5)


def test_load_checkpoint(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    load_checkpoint(fresh, path)
    for a, b in zip(net.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(InputError, match="checkpoint not found"):
        load_checkpoint(fresh, tmp_path / "none.pt")
    other = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 1))
    torch.save(other.state_dict(), path)
    with pytest.raises(InputError, match="another network.*shape"):
        load_checkpoint(fresh, path)
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(InputError, match="another network.*missing keys"):
        load_checkpoint(fresh, path)
    path.write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(fresh, path)


def test_paired_file_lists_broadcasts_one_reference_and_refuses_mismatches():
    from monai_inr.engines.checks import paired_file_lists

    assert paired_file_lists("a.nii.gz,b.nii.gz", "r.nii.gz") == (["a.nii.gz", "b.nii.gz"], ["r.nii.gz", "r.nii.gz"])
    assert paired_file_lists(["a", "b"], ["r", "s"]) == (["a", "b"], ["r", "s"])
    with pytest.raises(InputError, match="no T2w image given; .*one per sodium image"):
        paired_file_lists("a.nii.gz", " ", "sodium", "T2w")
    with pytest.raises(InputError, match="3 target images but 2 reference images; give one reference per target"):
        paired_file_lists(["a", "b", "c"], ["r", "s"])


def test_checkpoint_that_carries_its_network(tmp_path):
    from monai_inr.engines.checks import network_from_checkpoint, save_network_checkpoint
    from monai_inr.networks.nets import ArSSR

    net_def = {
        "_target_": "monai_inr.networks.nets.ArSSR",
        "feature_channels": 6,
        "decoder_hidden": 8,
        "input_skip": True,
        "encoder_kwargs": {"num_blocks": 1, "num_layers": 1, "features": 4, "growth": 4},
    }
    torch.manual_seed(0)
    trained = ArSSR(**{k: v for k, v in net_def.items() if k != "_target_"})
    path = save_network_checkpoint(net_def, trained.state_dict(), tmp_path / "model.pt")
    stored = torch.load(path, weights_only=True)
    assert stored["network_def"] == net_def and stored["model"]["decoder.stage1.0.weight"].dtype == torch.float16
    default = ArSSR()  # the paper network of inference.json: replaced by the checkpoint's own
    built = network_from_checkpoint(default, path)
    assert built is not default and built.input_skip and built.feature_channels == 6
    w = built.state_dict()["decoder.stage1.0.weight"]
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, trained.state_dict()["decoder.stage1.0.weight"].half().float())
    assert network_from_checkpoint(default, None) is default
    # a plain state dict still loads into the given network
    torch.save(trained.state_dict(), tmp_path / "plain.pt")
    same = ArSSR(**{k: v for k, v in net_def.items() if k != "_target_"})
    assert network_from_checkpoint(same, tmp_path / "plain.pt") is same
    # a checkpoint may not name arbitrary constructors, and non-finite weights are refused
    torch.save({"network_def": {"_target_": "os.system", "command": "true"}, "model": {}}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="must name a constructor in monai_inr.networks.nets"):
        network_from_checkpoint(default, tmp_path / "evil.pt")
    bad = trained.state_dict()
    bad["decoder.stage1.0.weight"] = bad["decoder.stage1.0.weight"] * float("nan")
    save_network_checkpoint(net_def, bad, tmp_path / "nan.pt")
    with pytest.raises(InputError, match="non-finite weights"):
        network_from_checkpoint(default, tmp_path / "nan.pt")


def test_network_knows_its_definition(tmp_path):
    from monai_inr.engines.checks import network_from_checkpoint, save_network_checkpoint
    from monai_inr.networks.nets import ArSSR

    net = ArSSR(feature_channels=6, decoder_hidden=8, encoder_kwargs={"num_blocks": 1, "num_layers": 1,
                                                                     "features": 4, "growth": 4}, input_skip=True)
    save_network_checkpoint(net, None, tmp_path / "m.pt", dtype=None)
    rebuilt = network_from_checkpoint(ArSSR(), tmp_path / "m.pt")
    assert rebuilt.config == net.config
    for (k, a), b in zip(net.state_dict().items(), rebuilt.state_dict().values()):
        assert torch.equal(a, b), k
