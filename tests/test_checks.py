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
