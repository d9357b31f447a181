"""NequIP internals: equivariant hidden features, parity, range (fitting: test_overfit.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from mlff.data import keys as K
from mlff.models.nequip import hidden_irreps
from tests import helpers
from tests.models.equivariance import feature_equivariance_error, model_inputs
from tests.models.physics import random_rotation, transformed

ARCHITECTURE = "nequip"
# three layers: the features entering the last block hold 0e, 1o, 1e, 2e, 2o (l_max 2)
DEEP = {"num_layers": 3}


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "rotoreflection"])
@pytest.mark.parametrize("structure", ["ethanol", "copper"])
@pytest.mark.parametrize("parity", [True, False], ids=["parity", "no-parity"])
def test_hidden_features_are_equivariant(structure, proper, parity):
    atoms = helpers.ethanol() if structure == "ethanol" else helpers.copper()
    for seed in range(2):
        error, size, irreps = feature_equivariance_error(
            ARCHITECTURE, atoms, random_rotation(seed, proper), parity=parity, **DEEP
        )
        assert size > 1e-3, "features vanish: the check would mean nothing"
        assert error < 1e-9
        assert any(ir.l > 0 for _, ir in irreps)
        # with parity, pseudo-tensors (parity (-1)^(l+1)) appear; without, none do
        pseudo = [ir for _, ir in irreps if ir.p != (-1) ** ir.l]
        assert bool(pseudo) == parity


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
    potential = helpers.build_potential(ARCHITECTURE, parity=True, **DEEP)
    graph = helpers.graph_of(helpers.ethanol(), potential.cutoff)
    inverted = dict(graph)
    inverted[K.POSITIONS] = -graph[K.POSITIONS]
    with torch.no_grad():
        features, irreps = potential.model.equivariant_features(model_inputs(potential, graph))
        turned, _ = potential.model.equivariant_features(model_inputs(potential, inverted))
    signs = torch.cat([torch.full((mul * ir.dim,), float(ir.p), dtype=features.dtype)
                       for mul, ir in irreps])
    assert {ir.p for _, ir in irreps} == {1, -1}
    assert {(ir.l, ir.p) for _, ir in irreps} >= {(1, -1), (1, 1)}  # vectors and pseudo-vectors
    odd = signs < 0
    assert features[:, odd].abs().max() > 1e-3 and features[:, ~odd].abs().max() > 1e-3
    torch.testing.assert_close(turned[:, odd], -features[:, odd], rtol=0, atol=1e-12)
    torch.testing.assert_close(turned[:, ~odd], features[:, ~odd], rtol=0, atol=1e-12)


@pytest.mark.parametrize("parity", [True, False])
def test_hidden_irreps_follow_nequip(parity):
    irreps = hidden_irreps(4, 2, parity)
    expected = {(0, 1), (1, -1), (2, 1)} | ({(0, -1), (1, 1), (2, -1)} if parity else set())
    assert {(ir.l, ir.p) for _, ir in irreps} == expected
    assert all(mul == 4 for mul, _ in irreps)


def test_missing_avg_num_neighbors_is_one():
    default = helpers.build_potential(ARCHITECTURE, avg_num_neighbors=None)
    one = helpers.build_potential(ARCHITECTURE, avg_num_neighbors=1.0)
    graph = helpers.graph_of(helpers.ethanol(), default.cutoff)
    torch.testing.assert_close(default(graph)[K.FORCES], one(graph)[K.FORCES], rtol=0, atol=0)


def test_per_species_scale_shift_acts_per_species():
    potential = helpers.build_potential(ARCHITECTURE)
    graph = helpers.graph_of(helpers.ethanol(), potential.cutoff)
    before = potential(graph, compute_forces=False)[K.NODE_ENERGY]
    with torch.no_grad():
        potential.model.scale_shift.shifts[1] += 0.5  # carbon (species index 1)
    after = potential(graph, compute_forces=False)[K.NODE_ENERGY]
    carbon = graph[K.ATOMIC_NUMBERS] == 6
    torch.testing.assert_close(after[carbon], before[carbon] + 0.5, rtol=0, atol=1e-12)
    torch.testing.assert_close(after[~carbon], before[~carbon], rtol=0, atol=0)
    off = helpers.build_potential(ARCHITECTURE, per_species_scale_shift=False)
    assert not any("scale_shift" in name for name, _ in off.named_parameters())


def test_float32_and_float64_agree():
    graph = helpers.graph_of(helpers.copper(), 4.0)
    double = helpers.build_potential(ARCHITECTURE, dtype=torch.float64)(graph, compute_stress=True)
    single_potential = helpers.build_potential(ARCHITECTURE, dtype=torch.float32)
    graph32 = helpers.graph_of(helpers.copper(), 4.0, torch.float32)
    single = single_potential(graph32, compute_stress=True)
    assert single[K.FORCES].dtype == torch.float32
    for key in (K.ENERGY, K.FORCES, K.STRESS):
        torch.testing.assert_close(single[key].double(), double[key], rtol=1e-4, atol=1e-5)


def chain(displacement: float = 0.0) -> Atoms:
    """A C-O-C-H chain along x, 3 Å apart; the last atom displaced sideways."""
    positions = np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [6.0, 0.0, 0.0], [9.0, 0.0, 0.0]])
    positions[2, 1] += displacement
    return Atoms("COCH", positions=positions)
