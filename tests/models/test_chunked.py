"""Chunked evaluation: the same energy, forces and stress as one pass over the structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from mlff import MLFFCalculator
from mlff.calculators import ase as ase_calculator
from mlff.data import keys as K
from mlff.errors import ConfigError, DataError
from mlff.models import chunked as chunked_module
from mlff.models.chunked import evaluate_in_chunks, plan_chunk_size, spatial_chunks
from mlff.models.potential import receptive_hops
from mlff.uq import Committee
from mlff.uq.committee import FORCES_STD, MEMBER_ENERGY, MEMBER_FORCES
from tests import helpers

# message-passing layers of helpers.TINY_HYPERPARAMETERS; Allegro and DeepPot-SE are local
HOPS = {"schnet": 2, "painn": 2, "nequip": 2, "mace": 2, "allegro": 1, "deeppot": 1,
        "sevennet": 2}


def copper_rod(periodic: bool = True):
    """Rattled fcc Cu, 6x2x2 cubic cells (96 atoms, 21.6 x 7.2 x 7.2 Å).

    Long along x, so that a chunk of 20 atoms with a halo of two 4 Å cutoffs is a strict
    part of it, periodic or not (a 3x3x3 cell would be covered whole by every halo).
    """
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((6, 2, 2))
    atoms.rattle(0.1, seed=7)
    atoms.pbc = periodic
    return atoms


def copper_cube():
    """Rattled, sheared 3x3x3 cubic fcc Cu (108 atoms), some atoms outside the cell."""
    atoms = helpers.copper(cubic=True).repeat(3)
    atoms.positions[:5] -= 0.5 * atoms.cell[2]
    return atoms


STRUCTURES = {
    "periodic-rod": lambda: copper_rod(True),
    "periodic-cube": copper_cube,
    "cluster": lambda: copper_rod(False),
    "slab": lambda: _slab(),
    "molecule": helpers.ethanol,
}


def _slab():
    atoms = copper_rod(True)
    atoms.pbc = (True, True, False)
    return atoms


def assert_same(chunked, whole, keys=(K.ENERGY, K.NODE_ENERGY, K.FORCES, K.STRESS)):
    for key in keys:
        if key in whole:
            assert chunked[key].shape == whole[key].shape, key
            assert chunked[key].dtype == whole[key].dtype, key
            np.testing.assert_allclose(chunked[key].numpy(), whole[key].detach().numpy(),
                                       rtol=0, atol=1e-10, err_msg=key)


def test_receptive_hops(architecture):
    potential = helpers.build_potential(architecture)
    assert potential.receptive_hops() == HOPS[architecture]
    assert Committee([potential, helpers.build_potential(architecture, seed=1)]).receptive_hops() \
        == HOPS[architecture]


@pytest.mark.parametrize(("architecture", "key"), [("schnet", "num_layers"),
                                                   ("painn", "num_layers"),
                                                   ("nequip", "num_layers"),
                                                   ("mace", "num_interactions")])
def test_receptive_hops_follow_the_layers(architecture, key):
    assert receptive_hops(helpers.full_hyperparameters(architecture, **{key: 3})) == 3
    assert receptive_hops(helpers.full_hyperparameters(architecture, **{key: 1})) == 1


def test_local_architectures_have_one_hop_whatever_their_layers():
    assert receptive_hops(helpers.full_hyperparameters("allegro", num_layers=3)) == 1
    with pytest.raises(ConfigError, match="message-passing"):
        receptive_hops({"architecture": "mystery", "cutoff": 4.0})


@pytest.mark.parametrize("structure", sorted(STRUCTURES))
def test_chunked_equals_whole(architecture, structure):
    potential = helpers.build_potential(architecture, scale=10.0, shift=0.25)
    atoms = STRUCTURES[structure]()
    graph = helpers.graph_of(atoms, potential.cutoff)
    stress = bool(atoms.pbc.all())
    whole = potential(graph, compute_stress=stress)
    size = 20 if len(atoms) > 20 else 3
    chunked = evaluate_in_chunks(potential, graph, size, compute_stress=stress)
    assert set(chunked) == set(whole)
    assert_same(chunked, whole)
    assert float(whole[K.FORCES].abs().max()) > 1e-2
    if stress:
        assert float(whole[K.STRESS].abs().max()) > 1e-5
    # the halo matters: one hop too few changes the result wherever the halo is a strict
    # part of the structure (so this test is not passed by halos covering everything)
    if structure in ("periodic-rod", "cluster") and HOPS[architecture] > 1:
        short = evaluate_in_chunks(potential, graph, size, hops=HOPS[architecture] - 1)
        assert float((short[K.FORCES] - whole[K.FORCES]).abs().max()) > 1e-6


def test_halos_are_strict_parts_of_the_rod():
    # what makes test_chunked_equals_whole on the rod a real test of the halo
    from mlff.models.chunked import _grow

    atoms = copper_rod()
    graph = helpers.graph_of(atoms, 4.0)
    sender, receiver = graph[K.EDGE_INDEX]
    n = len(atoms)
    order = torch.argsort(receiver, stable=True)
    indptr = torch.zeros(n + 1, dtype=torch.int64)
    indptr[1:] = torch.cumsum(torch.bincount(receiver, minlength=n), 0)
    in_set = torch.zeros(n, dtype=torch.bool)
    chunks = spatial_chunks(atoms.positions, atoms.cell.array, atoms.pbc, 20)
    for hops in (1, 2):
        sizes = [len(_grow(torch.as_tensor(c), hops, sender, order, indptr, in_set))
                 for c in chunks]
        assert max(sizes) < n
        assert not in_set.any()


def test_spatial_chunks_partition_the_atoms():
    atoms = copper_cube()
    chunks = spatial_chunks(atoms.positions, atoms.cell.array, atoms.pbc, 20)
    assert all(1 <= len(c) <= 20 for c in chunks)
    assert len(chunks) == 6  # ceil(108 / 20), evenly sized
    assert sorted(np.concatenate(chunks).tolist()) == list(range(len(atoms)))
    for c in chunks:
        assert (np.diff(c) > 0).all()
    # compact: each chunk spans much less than the cell
    wrapped = atoms.get_positions(wrap=True)
    spans = [np.ptp(wrapped[c], axis=0).max() for c in chunks]
    assert max(spans) < 0.8 * atoms.cell.lengths().max()
    assert [len(c) for c in spatial_chunks(atoms.positions, atoms.cell.array, atoms.pbc, 1)] \
        == [1] * len(atoms)


def test_float32_model():
    potential = helpers.build_potential("painn", scale=10.0, dtype=torch.float32)
    graph = helpers.graph_of(copper_rod(), potential.cutoff, dtype=torch.float32)
    whole = potential(graph, compute_stress=True)
    chunked = evaluate_in_chunks(potential, graph, 20, compute_stress=True)
    for key in (K.ENERGY, K.FORCES, K.STRESS):
        assert chunked[key].dtype == whole[key].dtype
        torch.testing.assert_close(chunked[key], whole[key].detach(), rtol=1e-4, atol=1e-4)


def test_committee_chunked_equals_whole():
    committee = Committee([helpers.build_potential("mace", seed=s, scale=10.0) for s in (0, 1)])
    graph = helpers.graph_of(copper_rod(), committee.cutoff)
    whole = committee(graph, compute_stress=True)
    chunked = evaluate_in_chunks(committee, graph, 20, compute_stress=True)
    assert set(chunked) == set(whole)
    assert_same(chunked, whole, (K.ENERGY, K.NODE_ENERGY, K.FORCES, K.STRESS, MEMBER_ENERGY,
                                 MEMBER_FORCES, FORCES_STD, "energy_std"))


def test_energy_mask():
    potential = helpers.build_potential("schnet", scale=10.0)
    graph = helpers.graph_of(helpers.ethanol(), potential.cutoff)
    mask = torch.zeros(9, dtype=torch.bool)
    mask[[0, 4]] = True
    out = potential(graph, energy_mask=mask)
    whole = potential(graph)
    torch.testing.assert_close(out[K.NODE_ENERGY], whole[K.NODE_ENERGY])
    torch.testing.assert_close(out[K.ENERGY], whole[K.NODE_ENERGY][mask].sum().reshape(1))
    # forces: minus the gradient of the masked sum only
    positions = graph[K.POSITIONS].clone().requires_grad_(True)
    partial = potential({**graph, K.POSITIONS: positions}, compute_forces=False)
    (grad,) = torch.autograd.grad(partial[K.NODE_ENERGY][mask].sum(), positions)
    torch.testing.assert_close(out[K.FORCES], -grad)


def test_bad_arguments():
    potential = helpers.build_potential("schnet")
    graph = helpers.graph_of(copper_rod(), potential.cutoff)
    with pytest.raises(ConfigError, match="max_atoms_per_chunk"):
        evaluate_in_chunks(potential, graph, 0)
    with pytest.raises(ConfigError, match="hops"):
        evaluate_in_chunks(potential, graph, 20, hops=0)
    from mlff.data import collate

    with pytest.raises(DataError, match="one structure"):
        evaluate_in_chunks(potential, collate([graph, graph]), 20)
    with pytest.raises(ConfigError, match="max_atoms_per_chunk"):
        MLFFCalculator(potential, max_atoms_per_chunk=-1)


@pytest.mark.parametrize("architecture", ["nequip", "deeppot"])
def test_calculator_in_chunks(architecture):
    potential = helpers.build_potential(architecture, scale=10.0, shift=0.25)
    atoms = copper_rod()
    whole = MLFFCalculator(potential, max_atoms_per_chunk=0)
    chunked = MLFFCalculator(potential, max_atoms_per_chunk=20)
    graph = chunked.atoms_to_graph(atoms)
    assert chunked.chunk_size(graph, True) == 20
    assert whole.chunk_size(graph, True) is None
    for name in ("energy", "energies", "forces", "stress"):
        np.testing.assert_allclose(chunked.get_property(name, atoms),
                                   whole.get_property(name, atoms), rtol=0, atol=1e-10)


def test_calculator_chunks_large_structures_by_itself(monkeypatch):
    potential = helpers.build_potential("painn", scale=10.0)
    atoms = copper_rod()
    calc = MLFFCalculator(potential)
    assert calc.chunk_size(calc.atoms_to_graph(atoms), True) is None  # small: runs whole
    expected = {p: calc.get_property(p, atoms) for p in ("energy", "forces", "stress")}
    calls = []
    original = ase_calculator.evaluate_in_chunks

    def spy(*args, **kwargs):
        calls.append(args[2])
        return original(*args, **kwargs)

    # pretend that the rod (~1700 edges) is large and memory short: the budget is 0.6x the
    # tensors a whole evaluation saves, which the plan doubles for the backward pass
    probe = chunked_module.autograd_bytes(potential, helpers.graph_of(atoms, 4.0), True)
    monkeypatch.setattr(ase_calculator, "AUTO_PROBE_EDGES", 400)
    monkeypatch.setattr(ase_calculator.runtime, "available_memory", lambda device: probe)
    monkeypatch.setattr(ase_calculator, "evaluate_in_chunks", spy)
    calc = MLFFCalculator(potential)
    for name, value in expected.items():
        np.testing.assert_allclose(calc.get_property(name, atoms), value, rtol=0, atol=1e-10)
    assert len(calls) == 1 and 1 <= calls[0] < len(atoms)


def test_committee_calculator_in_chunks():
    committee = Committee([helpers.build_potential("painn", seed=s, scale=10.0) for s in (0, 1)])
    atoms = copper_rod()
    whole = MLFFCalculator(committee, max_atoms_per_chunk=0)
    chunked = MLFFCalculator(committee, max_atoms_per_chunk=25)
    for name in ("energy", "forces", "stress", "forces_std", "energy_std", "member_energies"):
        np.testing.assert_allclose(chunked.get_property(name, atoms),
                                   whole.get_property(name, atoms), rtol=0, atol=1e-10)


def test_memory_plan_from_a_probe_chunk():
    """A probe smaller than the structure: the plan extrapolates the probe's halo."""
    potential = helpers.build_potential("mace")
    graph = helpers.graph_of(copper_rod(), potential.cutoff)
    whole = chunked_module.autograd_bytes(potential, graph, True)
    assert whole > 0
    assert plan_chunk_size(potential, graph, 100 * whole, True, probe_atoms=20) is None
    chunk = plan_chunk_size(potential, graph, 0.5 * whole, True, probe_atoms=20)
    assert chunk is not None and 1 <= chunk < graph[K.POSITIONS].shape[0]
    reference = potential(graph, compute_forces=True, compute_stress=True)
    out = evaluate_in_chunks(potential, graph, chunk, compute_stress=True)
    for key in (K.ENERGY, K.FORCES, K.STRESS):
        torch.testing.assert_close(out[key], reference[key].detach(), rtol=0, atol=1e-10)
