"""Graph dicts: structure_to_graph, collate offsets, to_device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlff.data import collate, structure_from_atoms, structure_to_graph, to_device
from mlff.data import keys as K
from mlff.data.graph import num_structures
from tests import helpers


def graph(atoms, cutoff=3.0, config_type=0):
    return structure_to_graph(structure_from_atoms(atoms), cutoff, config_type)


def test_structure_to_graph(copper):
    labelled = helpers.with_random_labels(copper)
    g = graph(labelled, config_type=3)
    n = len(copper)
    assert g[K.POSITIONS].shape == (n, 3) and g[K.POSITIONS].dtype == torch.float64
    assert g[K.ATOMIC_NUMBERS].dtype == torch.int64
    assert g[K.CELL].shape == (1, 3, 3) and g[K.PBC].shape == (1, 3)
    assert g[K.BATCH].tolist() == [0] * n and g[K.NUM_ATOMS].tolist() == [n]
    assert g[K.CONFIG_TYPE].tolist() == [3]
    assert g[K.HAS_ENERGY].item() and g[K.HAS_FORCES].item() and g[K.HAS_STRESS].item()
    assert g[K.ENERGY].item() == pytest.approx(labelled.get_potential_energy())
    np.testing.assert_allclose(g[K.FORCES].numpy(), labelled.get_forces())
    np.testing.assert_allclose(g[K.STRESS][0].numpy(), labelled.get_stress(voigt=False))
    assert g[K.EDGE_INDEX].shape[1] == g[K.EDGE_SHIFT].shape[0] > 0


def test_missing_labels_become_zeros_with_flags(water):
    g = graph(water)
    assert not g[K.HAS_ENERGY].item() and not g[K.HAS_FORCES].item()
    assert not g[K.HAS_STRESS].item()
    assert g[K.ENERGY].tolist() == [0.0]
    assert g[K.FORCES].abs().sum() == 0 and g[K.STRESS].abs().sum() == 0
    assert g[K.WEIGHT].tolist() == [1.0]


def test_collate_offsets():
    structures = [helpers.ethanol(), helpers.copper(), helpers.water()]
    graphs = [graph(a) for a in structures]
    batch = collate(graphs)
    sizes = [len(a) for a in structures]
    starts = np.cumsum([0, *sizes[:-1]])
    assert num_structures(batch) == 3
    assert batch[K.NUM_ATOMS].tolist() == sizes
    assert batch[K.BATCH].tolist() == sum(([i] * n for i, n in enumerate(sizes)), [])
    edges = [g[K.EDGE_INDEX].shape[1] for g in graphs]
    for g, part, start in zip(graphs, torch.split(batch[K.EDGE_INDEX], edges, dim=1), starts):
        assert torch.equal(part, g[K.EDGE_INDEX] + int(start))
    assert batch[K.CELL].shape == (3, 3, 3)
    assert batch[K.POSITIONS].shape == (sum(sizes), 3)
    # every edge joins atoms of the same structure
    sender, receiver = batch[K.EDGE_INDEX]
    assert torch.equal(batch[K.BATCH][sender], batch[K.BATCH][receiver])


def test_collate_of_batches_equals_flat_collate():
    graphs = [graph(a) for a in (helpers.ethanol(), helpers.copper(), helpers.water())]
    nested = collate([collate(graphs[:2]), graphs[2]])
    flat = collate(graphs)
    assert set(nested) == set(flat)
    for key in flat:
        assert torch.equal(nested[key], flat[key]), key


def test_collate_single_returns_a_copy():
    g = graph(helpers.water())
    batch = collate([g])
    batch[K.ENERGY] = torch.ones(1)
    assert g[K.ENERGY].tolist() == [0.0]


def test_collate_mismatched_keys():
    a, b = graph(helpers.water()), graph(helpers.water())
    del b[K.STRESS]
    with pytest.raises(ValueError, match="stress"):
        collate([a, b])


def test_to_device_casts_only_floats():
    g = to_device(graph(helpers.copper()), "cpu", torch.float32)
    assert g[K.POSITIONS].dtype == torch.float32 and g[K.CELL].dtype == torch.float32
    assert g[K.ATOMIC_NUMBERS].dtype == torch.int64 and g[K.PBC].dtype == torch.bool
    assert g[K.EDGE_INDEX].dtype == torch.int64


def test_graph_from_given_edges_is_structure_to_graph():
    from mlff.data.graph import graph_from_edges
    from mlff.data.neighbors import neighbor_list

    atoms = helpers.with_random_labels(helpers.copper())
    structure = structure_from_atoms(atoms)
    edges = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc, 3.0)
    given = graph_from_edges(structure, *edges, config_type=2)
    built = structure_to_graph(structure, 3.0, config_type=2)
    assert set(given) == set(built)
    for key, value in built.items():
        assert given[key].dtype == value.dtype and torch.equal(given[key], value), key
