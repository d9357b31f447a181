"""Dense (padded) neighbour layout: every atom's incoming edges in one row of D slots.

A neighbour sum of per-edge outer products, ``A[i] = Σ_{e→i} W[e] ⊗ Y[e]``, written with
``index_add`` materialises the (E, a·b) products; in the dense layout it is one batched
matrix product ``W_i^T Y_i`` of (D, a) and (D, b) matrices per atom, which reads only the
(E, a) and (E, b) factors. D is the largest in-degree; empty slots hold zeros.

Edges are placed by their receiver. The layout costs one sort of the receivers per
neighbour list; the models compute it once per forward and share it across layers.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
from e3nn import o3
from torch import nn

from mlff.nn.scatter import gather


def dense_slots(receiver: torch.Tensor, num_nodes: int,
                width_hint: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, int]:  # noqa: UP045
    """Slot of every edge in an (num_nodes, D) padded layout, and D.

    Args:
        receiver: (E,) int64 receiving atom of every edge.
        num_nodes: N.
        width_hint: a tensor whose first dimension is D, at least the largest number of
            edges of one receiver (its values are not read). Exported programs
            (:mod:`mlff.calculators.lammps.aoti`) take D this way, as a dimension of an
            input, because D read from the receivers is data-dependent.

    Returns:
        slots: (E,) int64, ``receiver * D + rank of the edge among the receiver's edges``.
        width: D = the largest number of edges of one receiver (at least 1), or the hint's.
    """
    counts = torch.zeros(num_nodes, dtype=receiver.dtype, device=receiver.device)
    counts = counts.index_add(0, receiver, torch.ones_like(receiver))
    if width_hint is not None:
        width = width_hint.shape[0]
    else:
        width = max(int(counts.max()), 1) if receiver.numel() > 0 else 1
    order = torch.argsort(receiver, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    sorted_receiver = receiver[order]
    rank = torch.arange(receiver.shape[0], device=receiver.device) - starts[sorted_receiver]
    slots = torch.empty_like(receiver)
    slots[order] = sorted_receiver * width + rank
    return slots, width


def to_dense(values: torch.Tensor, slots: torch.Tensor, num_nodes: int, width: int,
             fill: float = 0.0) -> torch.Tensor:
    """(E, ...) edge values -> (N, D, ...) padded layout; empty slots hold ``fill``."""
    out = values.new_full((num_nodes * width,) + values.shape[1:], fill)
    out = out.index_put((slots,), values)
    return out.reshape((num_nodes, width) + values.shape[1:])


def worth_padding(num_edges: int, num_nodes: int, width: int) -> bool:
    """Whether the padded layout wastes at most half of its slots (else: use scatter sums)."""
    return num_nodes * width <= 2 * max(num_edges, 1)


def plan_dense(receiver: torch.Tensor, num_nodes: int,
               width_hint: Optional[torch.Tensor] = None  # noqa: UP045 (TorchScript)
               ) -> tuple[bool, torch.Tensor, int]:
    """(:func:`worth_padding`, slots, D) of :func:`dense_slots` for these receivers.

    With ``width_hint`` (an exported program's D, see :func:`dense_slots`) the layout is
    always used: the caller chose it.
    """
    slots, width = dense_slots(receiver, num_nodes, width_hint)
    if width_hint is not None:
        return True, slots, width
    return worth_padding(receiver.shape[0], num_nodes, width), slots, width


class DenseUVUSum(nn.Module):
    """Neighbour sum of an e3nn "uvu" tensor product, evaluated in the dense layout.

    Computes, for every atom i, exactly what
    ``scatter_sum(tp(x[sender], y, w), receiver, N)`` computes, where ``tp`` is an
    :class:`e3nn.o3.TensorProduct` with per-edge weights, "uvu" instructions and
    multiplicity-1 second input (spherical harmonics). Per path p (l1 ⊗ l2 → l3):

        out[i, u, k] = Σ_{a,b} C_p[a, b, k] Σ_{e→i} w_p[e, u] x[s_e, u, a] y[e, b]

    The inner edge sum is one batched matrix product per input irrep over the dense
    layout; the coupling C_p (Wigner-3j times e3nn's path normalisation) is read off
    ``tp`` itself at construction, so the two paths agree to rounding.

    Args:
        tp: the tensor product to reproduce (not kept; its constants are copied).

    Raises:
        ValueError: an instruction is not a weighted "uvu" path with a multiplicity-1 y.
    """

    def __init__(self, tp: o3.TensorProduct) -> None:
        super().__init__()
        self.out_widths: list[int] = [s.stop - s.start for s in tp.irreps_out.slices()]
        reference = copy.deepcopy(tp).to(device="cpu", dtype=torch.float64)  # tp stays as is
        in1_slices = tp.irreps_in1.slices()
        in2_slices = tp.irreps_in2.slices()
        offset = 0
        groups: dict[int, list[int]] = {}  # input block -> [weight start, weight stop]
        # per path: group, rank among the group's paths, y start, y stop, i_out,
        # then the coupling's start in ``couplings`` and its shape (a, b, k)
        self.paths: list[list[int]] = []
        couplings = []
        for ins in tp.instructions:
            mul1, ir1 = tp.irreps_in1[ins.i_in1]
            mul2, ir2 = tp.irreps_in2[ins.i_in2]
            if ins.connection_mode != "uvu" or not ins.has_weight or mul2 != 1:
                raise ValueError(f"dense sum supports weighted 'uvu' paths with a multiplicity-1 "
                                 f"second input only, got {ins}")
            group = groups.setdefault(ins.i_in1, [offset, offset])
            if group[1] != offset:
                raise ValueError("the paths of one input irrep must have adjacent weights")
            rank = (offset - group[0]) // mul1
            group[1] = offset + mul1
            couplings.append(_coupling(reference, ins, offset))
            offset += mul1
            self.paths.append([ins.i_in1, rank, in2_slices[ins.i_in2].start,
                               in2_slices[ins.i_in2].stop, ins.i_out])
        if offset != tp.weight_numel:
            raise ValueError("unexpected weight layout")
        # one entry per input irrep with paths: block start, stop, mul, dim, weight start, stop
        self.groups: list[list[int]] = []
        for i_in1, (start, stop) in sorted(groups.items()):
            mul, ir = tp.irreps_in1[i_in1]
            self.groups.append([i_in1, in1_slices[i_in1].start, in1_slices[i_in1].stop, mul, ir.dim,
                                start, stop])
        group_of = {group[0]: g for g, group in enumerate(self.groups)}
        flat_start = 0
        for path, coupling in zip(self.paths, couplings):
            path[0] = group_of[path[0]]
            path.extend([flat_start, *coupling.shape])
            flat_start += coupling.numel()
        self.register_buffer("couplings", torch.cat([c.reshape(-1) for c in couplings]),
                             persistent=False)

    def weight_ranges(self) -> list[tuple[int, int]]:
        """(start, stop) in the product's weights of each group's ``weights`` argument."""
        return [(group[5], group[6]) for group in self.groups]

    def forward(self, x: torch.Tensor, sender: torch.Tensor, y: torch.Tensor,
                weights: list[torch.Tensor]) -> torch.Tensor:
        """Neighbour sums (N, dim_out).

        Args:
            x: (M, irreps_in1.dim) node features, M >= N: the layout's N receivers are
                nodes 0..N-1, and senders may be any of the M.
            sender: (N, D) int64 sender of every slot (any atom in empty slots).
            y: (N, D, irreps_in2.dim) edge attributes, zero in empty slots.
            weights: per input irrep with paths, (N, D, stop - start): the per-edge
                weights in :meth:`weight_ranges` (one tensor each, so that no slice of a
                large tensor needs a full-size gradient buffer).
        """
        n, width = sender.shape[0], sender.shape[1]
        rows = x.shape[0]
        # channels u innermost everywhere: the per-edge products vectorise over them
        y_first = y.transpose(1, 2)
        sums: list[torch.Tensor] = []  # per group: (N, dim2 of y, paths, dim1, mul)
        for g, group in enumerate(self.groups):
            start, stop, mul, dim = group[1], group[2], group[3], group[4]
            paths = (group[6] - group[5]) // mul
            block = x[:, start:stop].reshape(rows, mul, dim).transpose(1, 2).reshape(rows, dim * mul)
            features = gather(block, sender).reshape(n, width, 1, dim, mul)
            z = weights[g].reshape(n, width, paths, 1, mul) * features
            sums.append(torch.bmm(y_first, z.reshape(n, width, paths * dim * mul))
                        .reshape(n, -1, paths, dim, mul))
        blocks: list[torch.Tensor] = [x.new_zeros((n, 1)) for _ in self.out_widths]
        filled: list[bool] = [False for _ in self.out_widths]
        for path in self.paths:
            t = sums[path[0]][:, path[2] : path[3], path[1]]  # (N, b, a, mul)
            size = path[6] * path[7] * path[8]
            coupling = self.couplings[path[5] : path[5] + size].view(path[6], path[7], path[8])
            value = torch.einsum("nbau,abk->nuk", t, coupling).reshape(n, -1)
            i_out = path[4]
            if filled[i_out]:
                blocks[i_out] = blocks[i_out] + value
            else:
                blocks[i_out] = value
                filled[i_out] = True
        for i, width_out in enumerate(self.out_widths):
            if not filled[i]:
                blocks[i] = x.new_zeros((n, width_out))
        return torch.cat(blocks, dim=-1)


def _coupling(tp: o3.TensorProduct, ins, weight_start: int) -> torch.Tensor:
    """C[a, b, k] of one instruction, read from a float64 ``tp`` with unit inputs and weights.

    ``weight_start``: the instruction's first weight (channel 0).
    """
    _, ir1 = tp.irreps_in1[ins.i_in1]
    _, ir2 = tp.irreps_in2[ins.i_in2]
    _, ir3 = tp.irreps_out[ins.i_out]
    start1 = tp.irreps_in1.slices()[ins.i_in1].start
    start2 = tp.irreps_in2.slices()[ins.i_in2].start
    start3 = tp.irreps_out.slices()[ins.i_out].start
    rows = ir1.dim * ir2.dim
    x = torch.zeros(rows, tp.irreps_in1.dim, dtype=torch.float64)
    y = torch.zeros(rows, tp.irreps_in2.dim, dtype=torch.float64)
    w = torch.zeros(rows, tp.weight_numel, dtype=torch.float64)
    for a in range(ir1.dim):
        for b in range(ir2.dim):
            x[a * ir2.dim + b, start1 + a] = 1.0  # channel u = 0
            y[a * ir2.dim + b, start2 + b] = 1.0
    w[:, weight_start] = 1.0
    out = tp(x, y, w)[:, start3 : start3 + ir3.dim]
    # only this instruction carries weight; other paths into the block add nothing
    return out.reshape(ir1.dim, ir2.dim, ir3.dim).to(torch.get_default_dtype())
