"""Blocks shared by the e3nn architectures (NequIP, Allegro, SevenNet): irreps of the
hidden features, unit-variance initialisation, settled torch.fx code, per-species
scale and shift."""

from __future__ import annotations

import copy
import math

import torch
from e3nn import o3
from torch import nn


def hidden_irreps(num_features: int, l_max: int, parity: bool) -> o3.Irreps:
    """``num_features`` copies of every ``l <= l_max``: both parities, or ``(-1)^l`` only."""
    irreps = []
    for degree in range(l_max + 1):
        natural = (-1) ** degree
        irreps.append((num_features, (degree, natural)))
        if parity:
            irreps.append((num_features, (degree, -natural)))
    return o3.Irreps(irreps)


def reachable(irreps_in: o3.Irreps, irreps_edge: o3.Irreps, ir_out: o3.Irrep) -> bool:
    """Whether a tensor product of ``irreps_in`` with ``irreps_edge`` can give ``ir_out``."""
    return any(ir_out in ir1 * ir2 for _, ir1 in irreps_in for _, ir2 in irreps_edge)


def init_unit_variance(mlp: nn.Module) -> None:
    """Initialise the linear layers of an MLP for unit variance (as e3nn's FullyConnectedNet).

    O(1) inputs then give O(1) outputs (e.g. tensor-product weights); biases start at zero.
    """
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    for k, linear in enumerate(linears):
        gain = 1.0 if k == 0 else 1.679  # 1 / sqrt(E[silu(z)^2]) for z ~ N(0, 1)
        nn.init.normal_(linear.weight, std=gain / math.sqrt(linear.in_features))
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)


def settle_codegen(module: nn.Module) -> None:
    """Replace every child of ``module`` by a deep copy of itself.

    e3nn's tensor products generate their code with torch.fx; the first copy of one
    (``copy.deepcopy``, as for the EMA weights) reloads it with its Wigner-3j constants
    folded into extra buffers, so a copy would not have the buffers of the original and
    ``torch.optim.swa_utils.AveragedModel`` would pair the wrong ones. Copying once at
    construction gives the model the settled form; later copies keep it.
    """
    for name, child in list(module.named_children()):
        setattr(module, name, copy.deepcopy(child))


class PerSpeciesScaleShift(nn.Module):
    """Learnable ``scale[species] * x + shift[species]``, initialised to 1 and 0."""

    def __init__(self, num_species: int) -> None:
        super().__init__()
        self.scales = nn.Parameter(torch.ones(num_species))
        self.shifts = nn.Parameter(torch.zeros(num_species))

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Scale and shift x (N,) by the species (N,) of each atom."""
        return x * self.scales[species] + self.shifts[species]
