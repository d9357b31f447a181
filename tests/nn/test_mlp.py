"""MLP and activations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mlff.nn import MLP, ShiftedSoftplus, activation


def test_shifted_softplus():
    x = torch.tensor([-3.0, 0.0, 2.0], dtype=torch.float64)
    expected = torch.log1p(torch.exp(x)) - math.log(2.0)
    torch.testing.assert_close(ShiftedSoftplus()(x), expected)
    assert ShiftedSoftplus()(torch.zeros(1)).item() == 0.0


@pytest.mark.parametrize(
    "name, cls", [("silu", nn.SiLU), ("ssp", ShiftedSoftplus), ("tanh", nn.Tanh)]
)
def test_activation_by_name(name, cls):
    assert isinstance(activation(name), cls)


def test_unknown_activation():
    with pytest.raises(ValueError, match="silu"):
        activation("relu6")


def test_mlp_layers():
    mlp = MLP([5, 7, 3, 1], act="tanh", bias_last=False)
    linears = [m for m in mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(5, 7), (7, 3), (3, 1)]
    assert [m.bias is not None for m in linears] == [True, True, False]
    assert sum(isinstance(m, nn.Tanh) for m in mlp) == 2
    assert not isinstance(list(mlp)[-1], nn.Tanh)  # no activation after the last layer
    assert mlp(torch.randn(4, 5)).shape == (4, 1)


@pytest.mark.parametrize("sizes", [[8, 64, 64, 64, 128], [6, 16, 40]])
def test_folded_fully_connected_is_e3nns_network(sizes):
    from e3nn.nn import FullyConnectedNet

    from mlff.nn.mlp import folded_fully_connected, folded_scales

    torch.manual_seed(0)
    net = FullyConnectedNet(sizes, torch.nn.functional.silu).double()
    x = torch.randn(11, sizes[0], dtype=torch.float64)
    weights = [layer.weight for layer in net]
    ranges = [(0, 3), (3, sizes[-1])]
    parts = folded_fully_connected(x, weights, folded_scales(net), ranges)
    torch.testing.assert_close(torch.cat(parts, dim=-1), net(x), rtol=0, atol=1e-12)


def test_folding_refuses_other_activations():
    from e3nn.nn import FullyConnectedNet

    from mlff.nn.mlp import folded_scales

    with pytest.raises(ValueError, match="SiLU"):
        folded_scales(FullyConnectedNet([4, 8, 2], torch.tanh))
