import torch

from monai_inr.networks.utils import unwrap_network


def test_unwrap_network_reaches_the_wrapped_module():
    net = torch.nn.Linear(2, 2)
    assert unwrap_network(net) is net
    assert unwrap_network(torch.nn.DataParallel(net)) is net
