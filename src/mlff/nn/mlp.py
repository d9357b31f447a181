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


def folded_scales(net: nn.Sequential) -> list[float]:
    """Per-layer weight factors of an e3nn ``FullyConnectedNet`` with SiLU, constants folded.

    e3nn's layer k computes ``act(x @ W_k / sqrt(fan_in · var_in)) · c · sqrt(var_out)``,
    with c the activation's second-moment normalisation: two extra passes over the
    (E, width) activations per layer. Moving each layer's output factor into the next
    layer's weight gives the same function with matrix products and activations only
    (see :func:`folded_fully_connected`).
    """
    layers = list(net.children())
    scales, carry = [], 1.0
    for k, layer in enumerate(layers):
        last = k == len(layers) - 1
        if last and layer.act is None:
            scales.append(carry / math.sqrt(layer.h_in * layer.var_in / layer.var_out))
            continue
        if layer.act is None or getattr(layer.act, "f", None) is not nn.functional.silu:
            raise ValueError("folded_scales supports SiLU hidden layers and a linear output")
        scales.append(carry / math.sqrt(layer.h_in * layer.var_in))
        carry = float(layer.act.cst) * math.sqrt(layer.var_out)
    if not layers or layers[-1].act is not None:
        raise ValueError("folded_scales needs a linear last layer")
    return scales


def folded_fully_connected(x: torch.Tensor, weights: list[torch.Tensor], scales: list[float],
                           column_ranges: list[tuple[int, int]]) -> list[torch.Tensor]:
    """The e3nn ``FullyConnectedNet`` of :func:`folded_scales`: (..., in) -> (..., out).

    Returns the output columns ``[start, stop)`` of each of ``column_ranges``, each
    computed by its own matrix product (no slices of one large output).
    """
    last = len(weights) - 1
    for k in range(last):
        x = nn.functional.silu(torch.matmul(x, weights[k] * scales[k]))
    return [torch.matmul(x, weights[last][:, start:stop] * scales[last])
            for start, stop in column_ranges]


def layer_norm_mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear (with bias) -> LayerNorm -> SiLU per hidden layer, a plain Linear last.

    The radial MLP of ESEN/FairChem and of mace-torch's non-linear interaction block.
    ``sizes``: widths, input first.
    """
    layers: list[nn.Module] = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if k < len(sizes) - 2:
            layers.extend([nn.LayerNorm(n_out), nn.SiLU()])
    return nn.Sequential(*layers)
