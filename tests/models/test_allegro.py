"""Allegro internals: equivariant edge features, parity, locality (fitting: test_overfit.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlff.data import keys as K
from tests import helpers
from tests.models.equivariance import feature_equivariance_error, model_inputs
from tests.models.physics import random_rotation, transformed
from tests.models.test_nequip import chain

ARCHITECTURE = "allegro"


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "rotoreflection"])
@pytest.mark.parametrize("structure", ["ethanol", "copper"])
@pytest.mark.parametrize("parity", [True, False], ids=["parity", "no-parity"])
def test_edge_features_are_equivariant(structure, proper, parity):
    atoms = helpers.ethanol() if structure == "ethanol" else helpers.copper()
    for seed in range(2):
        error, size, irreps = feature_equivariance_error(
            ARCHITECTURE, atoms, random_rotation(seed, proper), parity=parity
        )
        assert size > 1e-3, "features vanish: the check would mean nothing"
        assert error < 1e-9
        assert any(ir.l > 0 for _, ir in irreps)
        pseudo = [ir for _, ir in irreps if ir.p != (-1) ** ir.l]
        assert bool(pseudo) == parity


def test_edge_features_are_one_row_per_edge():
    potential = helpers.build_potential(ARCHITECTURE)
    graph = helpers.graph_of(helpers.ethanol(), potential.cutoff)
    with torch.no_grad():
        features, irreps = potential.model.equivariant_features(model_inputs(potential, graph))
    assert features.shape == (graph[K.EDGE_INDEX].shape[1], irreps.dim)


@pytest.mark.parametrize("structure", ["ethanol", "copper"])
def test_deeper_model_is_invariant_under_rotoreflections(structure):
    # three layers: pseudo-scalars (0o) appear in the middle one and must not reach the energy
    potential = helpers.build_potential(ARCHITECTURE, num_layers=3, parity=True, scale=10.0)
    atoms = helpers.ethanol() if structure == "ethanol" else helpers.copper()
    rotation = random_rotation(4, proper=False)
    before = potential(helpers.graph_of(atoms, potential.cutoff))
    after = potential(helpers.graph_of(transformed(atoms, rotation), potential.cutoff))
    r = torch.tensor(rotation, dtype=torch.float64)
    torch.testing.assert_close(after[K.NODE_ENERGY], before[K.NODE_ENERGY], rtol=0, atol=1e-10)
    torch.testing.assert_close(after[K.FORCES], before[K.FORCES] @ r.T, rtol=0, atol=1e-10)


def test_inversion_flips_exactly_the_odd_parity_features():
    potential = helpers.build_potential(ARCHITECTURE, parity=True)
    graph = helpers.graph_of(helpers.copper(), potential.cutoff)
    inverted = dict(graph)
    inverted[K.POSITIONS] = -graph[K.POSITIONS]
    inverted[K.CELL] = -graph[K.CELL]
    with torch.no_grad():
        features, irreps = potential.model.equivariant_features(model_inputs(potential, graph))
        turned, _ = potential.model.equivariant_features(model_inputs(potential, inverted))
    signs = torch.cat([torch.full((mul * ir.dim,), float(ir.p), dtype=features.dtype)
                       for mul, ir in irreps])
    assert {(ir.l, ir.p) for _, ir in irreps} >= {(1, -1), (1, 1)}  # vectors and pseudo-vectors
    odd = signs < 0
    assert features[:, odd].abs().max() > 1e-3 and features[:, ~odd].abs().max() > 1e-3
    torch.testing.assert_close(turned[:, odd], -features[:, odd], rtol=0, atol=1e-12)
    torch.testing.assert_close(turned[:, ~odd], features[:, ~odd], rtol=0, atol=1e-12)


def test_missing_avg_num_neighbors_is_one():
    default = helpers.build_potential(ARCHITECTURE, avg_num_neighbors=None)
    one = helpers.build_potential(ARCHITECTURE, avg_num_neighbors=1.0)
    graph = helpers.graph_of(helpers.ethanol(), default.cutoff)
    torch.testing.assert_close(default(graph)[K.FORCES], one(graph)[K.FORCES], rtol=0, atol=0)


def atom0_energy_change(architecture: str, **overrides) -> float:
    """|ΔE_0| when atom 2 of :func:`chain` moves sideways: it is 6 Å from atom 0, beyond the
    4 Å cutoff and within two, and stays so; it is within the cutoff of atom 1."""
    potential = helpers.build_potential(architecture, **overrides)
    moved = chain(0.4)
    distance = np.linalg.norm(moved.positions[2] - moved.positions[0])
    assert potential.cutoff < distance < 2 * potential.cutoff
    with torch.no_grad():
        before = potential(helpers.graph_of(chain(), potential.cutoff), compute_forces=False)
        after = potential(helpers.graph_of(moved, potential.cutoff), compute_forces=False)
    # atom 1 does feel the move: the check is not vacuous
    assert abs(float(after[K.NODE_ENERGY][1] - before[K.NODE_ENERGY][1])) > 1e-6
    return abs(float(after[K.NODE_ENERGY][0] - before[K.NODE_ENERGY][0]))


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_strictly_local(num_layers):
    # atom 0's energy does not change, however many layers
    assert atom0_energy_change(ARCHITECTURE, num_layers=num_layers) == 0.0
    # nor does the gradient of atom 0's energy reach atom 2
    potential = helpers.build_potential(ARCHITECTURE, num_layers=num_layers)
    graph = helpers.graph_of(chain(0.4), potential.cutoff)
    positions = graph[K.POSITIONS].clone().requires_grad_(True)
    graph[K.POSITIONS] = positions
    node_energy = potential(graph, compute_forces=False)[K.NODE_ENERGY]
    grad = torch.autograd.grad(node_energy[0], positions)[0]
    assert grad[2].abs().max() == 0 and grad[1].abs().max() > 0


def test_locality_check_fails_for_message_passing():
    # NequIP with two layers: atom 0 feels atom 2 through atom 1, so the same check fails
    assert atom0_energy_change("nequip", num_layers=2) > 1e-6
