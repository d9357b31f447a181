"""Edge vectors of a graph dict: the one place their formula is written."""

from __future__ import annotations

import torch


def edge_vectors(
    positions: torch.Tensor,
    cell: torch.Tensor,
    edge_index: torch.Tensor,
    edge_shift: torch.Tensor,
    batch: torch.Tensor,
) -> torch.Tensor:
    """``r_ij = pos[j] - pos[i] + S_ij @ cell`` of every edge, Å.

    Args:
        positions: (N, 3) Cartesian positions, Å.
        cell: (B, 3, 3) lattice vectors as rows, Å.
        edge_index: (2, E) int64 sender i, receiver j.
        edge_shift: (E, 3) integer cell shifts S, in ``positions``' dtype.
        batch: (N,) int64 structure index of each atom.

    Returns:
        (E, 3) edge vectors, differentiable with respect to ``positions`` and ``cell``.
    """
    sender, receiver = edge_index[0], edge_index[1]
    # index_select rather than indexing: its backward is an index_add, several times
    # faster on the CPU than indexing's accumulating index_put
    cells = cell.index_select(0, batch.index_select(0, sender))
    return (positions.index_select(0, receiver) - positions.index_select(0, sender)
            + torch.einsum("ei,eij->ej", edge_shift, cells))
