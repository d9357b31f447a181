"""Graph dicts: build one from a structure, batch several, move them between devices.

The keys and their shapes are listed in :mod:`mlff.data.keys`. A single structure is a
batch of one, so every function here works on both.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mlff.data import keys as K
from mlff.data.neighbors import neighbor_list
from mlff.data.readers import Structure

Graph = dict[str, torch.Tensor]


def structure_to_graph(structure: Structure, cutoff: float, config_type: int = 0) -> Graph:
    """Build the graph dict of one structure (float64, on the CPU).

    Args:
        structure: the structure and its labels; missing labels become zeros with the
            matching ``has_*`` flag False.
        cutoff: neighbour-list radius, Å.
        config_type: integer tag of the structure's config_type.
    """
    atoms = structure.atoms
    edge_index, edge_shift = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff)
    return graph_from_edges(structure, edge_index, edge_shift, config_type)


def graph_from_edges(
    structure: Structure,
    edge_index: np.ndarray,
    edge_shift: np.ndarray,
    config_type: int = 0,
) -> Graph:
    """Build the graph dict of one structure from edges found elsewhere (float64, CPU).

    :func:`structure_to_graph` finds the edges itself; a caller that keeps its own
    neighbour list (:class:`mlff.calculators.neighbors.VerletNeighborList`) passes them here.

    Args:
        structure: the structure and its labels; missing labels become zeros with the
            matching ``has_*`` flag False.
        edge_index: (2, E) int64, sender i and receiver j of each directed edge.
        edge_shift: (E, 3) float64 integer cell shifts S: r_ij = pos[j] - pos[i] + S @ cell.
        config_type: integer tag of the structure's config_type.
    """
    atoms = structure.atoms
    n = len(atoms)
    graph: Graph = {
        K.POSITIONS: torch.tensor(atoms.positions, dtype=torch.float64),
        K.ATOMIC_NUMBERS: torch.tensor(atoms.numbers, dtype=torch.int64),
        # zeros for a structure periodic in no direction (DESIGN.md); kept for mixed pbc
        K.CELL: torch.tensor(
            atoms.cell.array if atoms.pbc.any() else np.zeros((3, 3)), dtype=torch.float64
        ).reshape(1, 3, 3),
        K.PBC: torch.tensor(atoms.pbc, dtype=torch.bool).reshape(1, 3),
        K.EDGE_INDEX: torch.as_tensor(np.ascontiguousarray(edge_index, dtype=np.int64)),
        K.EDGE_SHIFT: torch.as_tensor(np.ascontiguousarray(edge_shift, dtype=np.float64)),
        K.BATCH: torch.zeros(n, dtype=torch.int64),
        K.NUM_ATOMS: torch.tensor([n], dtype=torch.int64),
        K.WEIGHT: torch.tensor([structure.weight], dtype=torch.float64),
        K.CONFIG_TYPE: torch.tensor([config_type], dtype=torch.int64),
        K.HAS_ENERGY: torch.tensor([structure.energy is not None]),
        K.HAS_FORCES: torch.tensor([structure.forces is not None]),
        K.HAS_STRESS: torch.tensor([structure.stress is not None]),
        K.ENERGY: torch.tensor(
            [structure.energy if structure.energy is not None else 0.0], dtype=torch.float64
        ),
        K.FORCES: torch.tensor(
            structure.forces if structure.forces is not None else np.zeros((n, 3)),
            dtype=torch.float64,
        ),
        K.STRESS: torch.tensor(
            structure.stress if structure.stress is not None else np.zeros((3, 3)),
            dtype=torch.float64,
        ).reshape(1, 3, 3),
    }
    return graph


def collate(graphs: Sequence[Graph]) -> Graph:
    """Concatenate graph dicts (single structures or batches) into one batch.

    Edge indices are offset by the number of atoms before each graph, batch ids by the
    number of structures before it. Every input must have the same keys.
    """
    if len(graphs) == 1:
        return dict(graphs[0])
    keys = set(graphs[0])
    for g in graphs[1:]:
        if set(g) != keys:
            raise ValueError(f"cannot batch graphs with different keys: {sorted(keys ^ set(g))}")
    atom_counts = [int(g[K.NUM_ATOMS].sum()) for g in graphs]
    structure_counts = [int(g[K.NUM_ATOMS].shape[0]) for g in graphs]
    atom_starts = np.cumsum([0, *atom_counts[:-1]]).tolist()
    structure_starts = np.cumsum([0, *structure_counts[:-1]]).tolist()
    batch: Graph = {}
    for key in keys:
        if key == K.EDGE_INDEX:
            batch[key] = torch.cat([g[key] + s for g, s in zip(graphs, atom_starts)], dim=1)
        elif key == K.BATCH:
            batch[key] = torch.cat([g[key] + s for g, s in zip(graphs, structure_starts)])
        else:
            batch[key] = torch.cat([g[key] for g in graphs])
    return batch


def to_device(graph: Graph, device: torch.device | str, dtype: torch.dtype | None = None) -> Graph:
    """Move a graph dict to ``device``; floating tensors also to ``dtype`` when given.

    Energy labels stay float64: the Potential sums energies in float64 (see
    :mod:`mlff.models.potential`), and a float32 total energy can be off by meV.
    """
    out = {}
    for key, value in graph.items():
        if dtype is not None and value.is_floating_point() and key != K.ENERGY:
            out[key] = value.to(device=device, dtype=dtype)
        else:
            out[key] = value.to(device=device)
    return out


def num_structures(graph: Graph) -> int:
    """Number of structures in a graph dict."""
    return int(graph[K.NUM_ATOMS].shape[0])
