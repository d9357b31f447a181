"""Neighbour-list reuse between calls: a Verlet list with a skin (buffer).

The list is built (by :func:`mlff.data.neighbors.neighbor_list`) at ``cutoff + skin`` and
kept with the positions, cell, pbc and atomic numbers it was built for. While no atom has
moved more than ``skin / 2`` from its position at the build, every pair now closer than
``cutoff`` was closer than ``cutoff + skin`` then (|r_now| >= |r_build| - 2 · skin/2), so
it is in the kept list with the same cell shift: filtering the kept pairs by their current
length gives exactly the pairs a fresh list at ``cutoff`` would find (in another order).

The list is rebuilt when the atomic numbers, pbc or cell changed (an NPT step, a new
structure), or when some atom moved more than ``skin / 2``. An atom that ASE wraps back
into the cell jumps by a lattice vector, which is longer than ``skin / 2`` for any sensible
cell, so a wrap triggers a rebuild too; for a cell so small that a lattice vector could be
shorter than that, the list is rebuilt on every call.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from mlff.data.neighbors import neighbor_list
from mlff.errors import ConfigError


class VerletNeighborList:
    """A neighbour list at ``cutoff`` that reuses pairs found at ``cutoff + skin``.

    Args:
        cutoff: the radius of the pairs returned, Å.
        skin: the buffer, Å; 0 builds a fresh list at ``cutoff`` on every call.

    Attributes:
        calls: number of :meth:`update` calls.
        rebuilds: how many of them built a new list (the others filtered the kept one).

    Raises:
        ConfigError: a negative or non-finite ``skin``, or a non-positive ``cutoff``.
    """

    def __init__(self, cutoff: float, skin: float = 0.5) -> None:
        if not (np.isfinite(cutoff) and cutoff > 0):
            raise ConfigError(f"the neighbour-list cutoff must be positive, got {cutoff} Å.")
        if not (np.isfinite(skin) and skin >= 0):
            raise ConfigError(f"the neighbour-list skin must be 0 or positive, got {skin} Å.")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.calls = 0
        self.rebuilds = 0
        self._positions: np.ndarray | None = None
        self._cell: np.ndarray | None = None
        self._pbc: np.ndarray | None = None
        self._numbers: np.ndarray | None = None
        self._edge_index: np.ndarray | None = None
        self._edge_shift: np.ndarray | None = None
        self._sender: np.ndarray | None = None
        self._receiver: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self._reusable = False

    def reset(self) -> None:
        """Forget the kept list: the next :meth:`update` rebuilds."""
        self._positions = None
        self._edge_index = self._edge_shift = self._offsets = None
        self._sender = self._receiver = None

    def update(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """The pairs of ``atoms`` closer than ``cutoff``, rebuilding the list when needed.

        Args:
            atoms: positions (Å), cell, pbc and atomic numbers are read; not modified.

        Returns:
            edge_index: (2, E) int64, sender i and receiver j (both directions listed).
            edge_shift: (E, 3) float64 integer cell shifts S: r_ij = pos[j] - pos[i] + S @ cell.
            The same set of pairs as ``neighbor_list(..., cutoff)``, not necessarily in
            its order.

        Raises:
            DataError: the neighbour list cannot be built (bad cell or pbc).
        """
        self.calls += 1
        positions = np.asarray(atoms.positions, dtype=np.float64)
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        pbc = np.asarray(atoms.pbc, dtype=bool)
        if self._needs_rebuild(positions, cell, pbc, atoms.numbers):
            return self._build(positions, cell, pbc, atoms.numbers)
        return self._filter(positions)

    def _needs_rebuild(
        self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, numbers: np.ndarray
    ) -> bool:
        if self.skin == 0 or self._positions is None or not self._reusable:
            return True
        if positions.shape != self._positions.shape or not np.array_equal(numbers, self._numbers):
            return True
        if not (np.array_equal(pbc, self._pbc) and np.array_equal(cell, self._cell)):
            return True
        moved = positions - self._positions
        squared = np.einsum("ij,ij->i", moved, moved)
        return bool(squared.max(initial=0.0) > (0.5 * self.skin) ** 2)

    def _build(
        self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, numbers: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        self.rebuilds += 1
        if self.skin == 0:
            return neighbor_list(positions, cell, pbc, self.cutoff)
        edge_index, edge_shift = neighbor_list(positions, cell, pbc, self.cutoff + self.skin)
        self._positions = positions.copy()
        self._cell = cell.copy()
        self._pbc = pbc.copy()
        self._numbers = np.array(numbers, copy=True)
        self._edge_index, self._edge_shift = edge_index, edge_shift
        self._reusable = 0.5 * self.skin < _shortest_lattice_translation(cell, pbc)
        self._sender = np.ascontiguousarray(edge_index[0])
        self._receiver = np.ascontiguousarray(edge_index[1])
        # the offsets S @ cell (3, E) of the kept pairs do not change until a rebuild
        self._offsets = np.ascontiguousarray((edge_shift @ cell).T)
        return self._filter(positions)

    def _filter(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # |r_ij|² of every kept pair, one Cartesian component at a time: np.take on 1-D
        # arrays and in-place arithmetic are ~6x faster than fancy-indexing (E, 3) rows
        columns = np.ascontiguousarray(positions.T)
        squared = np.zeros(self._sender.shape[0])
        for axis in range(3):
            component = columns[axis].take(self._receiver)
            component -= columns[axis].take(self._sender)
            component += self._offsets[axis]
            component *= component
            squared += component
        keep = np.flatnonzero(squared < self.cutoff * self.cutoff)
        return self._edge_index.take(keep, axis=1), self._edge_shift.take(keep, axis=0)


def _shortest_lattice_translation(cell: np.ndarray, pbc: np.ndarray) -> float:
    """A lower bound on the length of any nonzero lattice translation along periodic axes, Å.

    A translation ``Σ_k n_k a_k`` (n_k integers, nonzero only for periodic k) with some
    n_k ≠ 0 is at least as long as the distance between neighbouring lattice planes
    ``h_k = sqrt(det G_P / det G_{P∖k})`` (G: Gram matrix of the periodic vectors P), so
    the minimum of ``h_k`` over the periodic axes bounds it. ``inf`` without periodicity,
    0 for a degenerate periodic cell.
    """
    periodic = [k for k in range(3) if pbc[k]]
    if not periodic:
        return float("inf")
    vectors = cell[periodic]
    gram = vectors @ vectors.T
    full = np.linalg.det(gram)
    if not full > 0:
        return 0.0
    heights = []
    for k in range(len(periodic)):
        rest = np.delete(np.delete(gram, k, axis=0), k, axis=1)
        heights.append(np.sqrt(full / (np.linalg.det(rest) if rest.size else 1.0)))
    return float(min(heights))
