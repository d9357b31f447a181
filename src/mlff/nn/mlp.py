"""Multi-layer perceptrons and the activations the architectures use."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class ShiftedSoftplus(nn.Module):
    """``softplus(x) - log 2``: smooth, zero at zero (SchNet)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Elementwise."""
        return nn.functional.softplus(x) - math.log(2.0)


def activation(name: str) -> nn.Module:
    """Build an activation by name: ``silu``, ``ssp`` (shifted softplus) or ``tanh``."""
    table = {"silu": nn.SiLU, "ssp": ShiftedSoftplus, "tanh": nn.Tanh}
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(table)}")
    return table[name]()


class MLP(nn.Sequential):
    """Linear layers with an activation between them (none after the last).

    Args:
        sizes: widths, input first, e.g. ``[64, 64, 1]`` gives two linear layers.
        act: activation name (see :func:`activation`).
        bias_last: whether the last layer has a bias.
    """

    def __init__(self, sizes: Sequence[int], act: str = "silu", bias_last: bool = True) -> None:
        layers: list[nn.Module] = []
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = k == len(sizes) - 2
            layers.append(nn.Linear(n_in, n_out, bias=bias_last or not last))
            if not last:
                layers.append(activation(act))
        super().__init__(*layers)
