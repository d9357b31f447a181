"""Neighbour lists: the one place where edges are found (on ``vesin``).

O(N) cell lists for any triclinic cell, mixed periodic boundary conditions and cutoffs
longer than the cell (several periodic images of the same atom become neighbours).
"""

from __future__ import annotations

import numpy as np
import vesin

from mlff.errors import DataError


def neighbor_list(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
) -> tuple[np.ndarray, np.ndarray]:
    """All directed pairs closer than ``cutoff``.

    Args:
        positions: (N, 3) Cartesian positions, Å.
        cell: (3, 3) lattice vectors as rows, Å; ignored along non-periodic directions.
        pbc: (3,) periodicity along each lattice vector.
        cutoff: radius, Å.

    Returns:
        edge_index: (2, E) int64, sender i and receiver j; both directions are listed.
        edge_shift: (E, 3) float64 integer cell shifts S with r_ij = pos[j] - pos[i] + S @ cell.
    """
    pbc = np.asarray(pbc, dtype=bool)
    box = np.where(pbc[:, None], np.asarray(cell, dtype=np.float64), 0.0)
    if not pbc.any():
        box = np.zeros((3, 3))
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    try:
        i, j, shifts = calculator.compute(
            np.ascontiguousarray(positions, dtype=np.float64), box, pbc.tolist(), "ijS"
        )
    except Exception as exc:  # vesin reports bad cells as RuntimeError/ValueError
        raise DataError(f"neighbour list failed ({exc}); check the cell and pbc.") from None
    edge_index = np.stack([i, j]).astype(np.int64)
    return edge_index, shifts.astype(np.float64)
