"""Message-passing models split into per-layer stages reproduce the whole model when each
rank sees one cutoff of ghosts and takes their features from the owners between stages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlff.calculators.lammps.layerwise import run_partitioned, split_architecture
from mlff.data import keys as K
from tests import helpers

SPLIT = ["schnet", "painn", "nequip", "mace"]
THREE_LAYERS = {"schnet": {"num_layers": 3}, "painn": {"num_layers": 3},
                "nequip": {"num_layers": 3}, "mace": {"num_interactions": 3}}


def crystal(repeat: int) -> "helpers.Atoms":
    """Rattled, sheared fcc Cu with a few O, C and H atoms (cell 3.6·repeat Å)."""
    atoms = helpers.copper(seed=5).repeat((repeat,) * 3)
    symbols = atoms.get_chemical_symbols()
    for k, element in zip(range(1, len(atoms), 7), ["O", "C", "H"] * len(atoms)):
        symbols[k] = element
    atoms.set_chemical_symbols(symbols)
    return atoms


def whole_model(potential, atoms):
    """Per-atom energies, forces and virial of the architecture on the whole graph."""
    graph = potential.inputs(helpers.graph_of(atoms, 4.0))
    model = potential.model
    vectors = graph[K.EDGE_VECTORS].detach().requires_grad_(True)
    graph[K.EDGE_VECTORS] = vectors
    graph[K.EDGE_LENGTHS] = torch.linalg.norm(vectors, dim=-1)
    energies = model(graph)
    (grad,) = torch.autograd.grad([energies.sum()], [vectors])
    sender, receiver = graph[K.EDGE_INDEX].numpy()
    forces = np.zeros((len(atoms), 3))
    np.add.at(forces, sender, grad.numpy())
    np.add.at(forces, receiver, -grad.numpy())
    virial = -vectors.detach().numpy().T @ grad.numpy()
    return energies.detach().numpy(), forces, virial, graph


def partition(atoms, ranks: int, axis: int = 0) -> np.ndarray:
    """The rank of each atom: equal slabs of the cell along ``axis``."""
    fractional = atoms.get_scaled_positions(wrap=True)[:, axis]
    return np.minimum((fractional * ranks).astype(int), ranks - 1)


@pytest.mark.parametrize("layers", ["two", "three"])
@pytest.mark.parametrize("architecture", SPLIT)
def test_split_with_exchange_equals_whole_model(architecture, layers):
    overrides = THREE_LAYERS[architecture] if layers == "three" else {}
    potential = helpers.build_potential(architecture, seed=1, **overrides)
    assert_split_equals_whole_model(potential, 3 if layers == "three" else 2)


@pytest.mark.parametrize("first", ["plain", "density"])
def test_mace_without_a_residual_first_layer_splits(first):
    """mace-torch's default first layer has no residual: its species skip comes after the
    neighbour sum, which the stage then lays out for the local atoms alone."""
    potential = helpers.build_potential("mace", seed=1, interaction_first=first)
    split = split_architecture(potential.model)
    assert split.local_after_sum[0] and split.use_dense
    assert_split_equals_whole_model(potential, 2)


def assert_split_equals_whole_model(potential, num_stages: int) -> None:
    split = split_architecture(potential.model)
    assert split is not None and split.num_stages == num_stages
    # a cell thinner than two ghost widths (7.2 Å < 8 Å) in 2 and 3 slabs, and a larger one
    for repeat, ranks in ((2, 2), (2, 3), (3, 2)):
        atoms = crystal(repeat)
        energies, forces, virial, graph = whole_model(potential, atoms)
        owner = partition(atoms, ranks, axis=repeat % 3)
        assert len(set(owner)) == ranks
        got_e, got_f, got_v = run_partitioned(
            split, graph[K.SPECIES], graph[K.ATOMIC_NUMBERS], atoms.positions,
            atoms.cell.array, atoms.pbc, owner, 4.0)
        np.testing.assert_allclose(got_e, energies, rtol=0, atol=1e-11)
        np.testing.assert_allclose(got_f, forces, rtol=0, atol=1e-11)
        np.testing.assert_allclose(got_v, virial, rtol=0, atol=1e-10)
        assert np.abs(forces).max() > 1e-3  # not trivially zero


def test_without_the_exchange_the_split_is_wrong():
    """Ghost features left at zero (no forward exchange) change the energies: the
    comparison above depends on the exchange."""
    potential = helpers.build_potential("painn", seed=1)
    split = split_architecture(potential.model)
    atoms = crystal(2)
    energies, _, _, graph = whole_model(potential, atoms)

    class NoExchange(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner, self.num_stages, self.center_index = inner, inner.num_stages, inner.center_index

        def forward(self, stage, features, *rest):
            return self.inner(stage, torch.zeros_like(features), *rest)

    got, _, _ = run_partitioned(NoExchange(split), graph[K.SPECIES], graph[K.ATOMIC_NUMBERS],
                                atoms.positions, atoms.cell.array, atoms.pbc,
                                partition(atoms, 2), 4.0)
    assert np.abs(got - energies).max() > 1e-3


def test_strictly_local_and_unknown_models_have_no_split():
    for architecture in ("allegro", "deeppot", "sevennet"):
        assert split_architecture(helpers.build_potential(architecture).model) is None


class _MemberStages:
    """The stages of committee member ``member`` of a deployed module, as a split."""

    def __init__(self, scripted, member: int) -> None:
        self.scripted, self.member = scripted, member
        self.num_stages, self.center_index = scripted.num_stages, scripted.center_index

    def __call__(self, stage, features, species, atomic_numbers, edge_index, edge_vectors,
                 num_local):
        return self.scripted.stage(self.member, stage, features, species, edge_index,
                                   edge_vectors, num_local)


@pytest.mark.parametrize("architecture", ["nequip", "mace"])
def test_deployed_stages_equal_the_deployed_model(architecture):
    """TorchScript stages (of both members of a MACE committee), with E0, scale, shift and
    ZBL (on the central atom: the receiver in MACE, the sender in NequIP), run with the
    exchange, give the deployed module's energies, forces and virial."""
    from mlff.calculators.lammps.deploy import evaluate, script_model
    from mlff.uq.committee import Committee

    seeds = (0, 1) if architecture == "mace" else (0,)
    members = [helpers.build_potential(architecture, seed=seed, scale=2.0, shift=0.1,
                                       zbl=seed == 0) for seed in seeds]
    scripted = script_model(Committee(members) if len(members) > 1 else members[0])
    assert scripted.num_stages == 2 and scripted.feature_width > 0
    atoms = crystal(2)
    expected = evaluate(scripted, atoms)
    graph = members[0].inputs(helpers.graph_of(atoms, 4.0))
    for k in range(len(members)):
        energies, forces, virial = run_partitioned(
            _MemberStages(scripted, k), graph[K.SPECIES], graph[K.ATOMIC_NUMBERS],
            atoms.positions, atoms.cell.array, atoms.pbc, partition(atoms, 2), 4.0)
        np.testing.assert_allclose(energies, expected["energies"][k], rtol=0, atol=1e-11)
        np.testing.assert_allclose(forces, expected["forces"][k], rtol=0, atol=1e-11)
        np.testing.assert_allclose(0.5 * (virial + virial.T), expected["virial"][k], rtol=0,
                                   atol=1e-10)


def test_strictly_local_models_deploy_without_stages():
    from mlff.calculators.lammps.deploy import script_model

    assert script_model(helpers.build_potential("allegro")).num_stages == 0


@pytest.mark.parametrize("kind", ["plain", "density", "density_residual", "att_residual",
                                  "nonlinear"])
def test_every_mace_block_kind_splits_and_compiles(kind):
    """Every MACE interaction block (with a distance transform, the envelope on the radial
    MLP's output) gives exact stages, and they compile to TorchScript (deploy would
    otherwise fall back to the halo without a word)."""
    from mlff.calculators.lammps.deploy import _script_architecture

    potential = helpers.build_potential("mace", seed=2, interaction=kind,
                                        distance_transform="agnesi", apply_cutoff=False,
                                        max_L=1, max_ell=2, use_so3=kind == "nonlinear")
    atoms = crystal(2)
    energies, forces, _, graph = whole_model(potential, atoms)
    got_e, got_f, _ = run_partitioned(split_architecture(potential.model), graph[K.SPECIES],
                                      graph[K.ATOMIC_NUMBERS], atoms.positions,
                                      atoms.cell.array, atoms.pbc, partition(atoms, 2), 4.0)
    # forces of ~1e3 eV/Å here (the transform at short range): relative rounding
    np.testing.assert_allclose(got_e, energies, rtol=0, atol=1e-12 * np.abs(energies).max())
    np.testing.assert_allclose(got_f, forces, rtol=0, atol=1e-12 * np.abs(forces).max())
    _, splits = _script_architecture(potential.model)
    assert len(splits) == 1
