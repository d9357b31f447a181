"""Gated equivariant nonlinearity: SiLU on the scalars, sigmoid gates on the rest.

For features with irreps ``S x 0e + m1 x ir1 + m2 x ir2 + ...`` (l > 0 after the
scalars), the input carries the S scalars, then one extra scalar (a gate) per copy of
every l > 0 irrep, then those irreps: in e3nn's sorted, simplified layout, one block of
``S + m1 + m2 + ...`` scalars followed by the l > 0 blocks. The output is
``silu(scalars)`` followed by every l > 0 copy multiplied by ``sigmoid`` of its gate,
i.e. the irreps given. Activations are plain (no second-moment normalisation).
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn


class Gate(nn.Module):
    """(N, :attr:`irreps_in`.dim) -> (N, irreps_out.dim) for the irreps given.

    Args:
        irreps_out: sorted irreps whose scalars (``0e``) come first, e.g.
            ``8x0e+8x1o+8x2e``; only one scalar block.
    """

    def __init__(self, irreps_out: o3.Irreps) -> None:
        super().__init__()
        irreps_out = o3.Irreps(irreps_out)
        scalars = [(mul, ir) for mul, ir in irreps_out if ir.l == 0]
        gated = [(mul, ir) for mul, ir in irreps_out if ir.l > 0]
        if len(scalars) > 1 or (scalars and scalars[0][1] != o3.Irrep("0e")) or \
                list(irreps_out) != scalars + gated:
            raise ValueError(f"Gate needs one 0e block first, then l > 0 irreps; got {irreps_out}")
        self.num_scalars = scalars[0][0] if scalars else 0
        self.num_gates = sum(mul for mul, _ in gated)
        # (multiplicity, dimension of one copy) of every gated block, in order
        self.gated: list[tuple[int, int]] = [(mul, ir.dim) for mul, ir in gated]
        gates = [(mul, o3.Irrep("0e")) for mul, _ in gated]
        self.irreps_in = o3.Irreps(scalars + gates + gated).sort().irreps.simplify()
        self.irreps_out = irreps_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Gate the features; see the class."""
        s, g = self.num_scalars, self.num_gates
        parts = [nn.functional.silu(x[:, :s])]
        gates = torch.sigmoid(x[:, s: s + g])
        start, gate_start = s + g, 0
        for mul, dim in self.gated:
            block = x[:, start: start + mul * dim].reshape(-1, mul, dim)
            gate = gates[:, gate_start: gate_start + mul].unsqueeze(-1)
            parts.append((block * gate).reshape(-1, mul * dim))
            start += mul * dim
            gate_start += mul
        return torch.cat(parts, dim=-1)
