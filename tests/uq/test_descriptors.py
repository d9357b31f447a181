import numpy as np
import pytest
import torch
from ase.build import bulk
from scipy.spatial.transform import Rotation

from mlff.uq.descriptors import structure_descriptors
from tests import helpers


@pytest.mark.parametrize("architecture", ["schnet", "painn", "nequip", "mace", "allegro", "deeppot"])
def test_descriptors_are_invariant_and_tell_structures_apart(architecture):
    potential = helpers.build_potential(architecture)
    molecule = helpers.ethanol()
    rotated = molecule.copy()
    rotated.positions = Rotation.from_euler("xyz", [0.3, 1.1, -0.7]).apply(molecule.positions) + 2.0
    permuted = molecule[np.random.default_rng(0).permutation(len(molecule))]
    d = [structure_descriptors(potential, helpers.graph_of(a, potential.cutoff))
         for a in (molecule, rotated, permuted, helpers.ethanol(seed=5, amplitude=0.3))]
    assert d[0].shape[0] == 1 and d[0].shape[1] >= len(potential.species)
    torch.testing.assert_close(d[1], d[0], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(d[2], d[0], rtol=1e-9, atol=1e-9)
    assert float((d[3] - d[0]).abs().max()) > 1e-4


def test_batched_descriptors_equal_single_ones():
    from mlff.data.graph import collate

    potential = helpers.build_potential("painn")
    structures = [helpers.ethanol(), bulk("Cu", cubic=True)]
    graphs = [helpers.graph_of(a, potential.cutoff) for a in structures]
    batched = structure_descriptors(potential, collate(graphs))
    for i, graph in enumerate(graphs):
        torch.testing.assert_close(batched[i:i + 1], structure_descriptors(potential, graph))
