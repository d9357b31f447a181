"""The Potential wrapper and the architecture registry."""

from __future__ import annotations

import pytest
import torch
from ase import Atoms
from pydantic import ValidationError

from mlff.data import keys as K
from mlff.errors import MLFFError, UnknownElementError
from mlff.models import Potential, architectures, build_model, get_architecture
from tests import helpers


def test_registry_lists_builtin_architectures():
    assert {"schnet", "painn"} <= set(architectures())
    assert get_architecture("painn").__name__ == "PaiNN"


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(KeyError, match="schnet"):
        get_architecture("transformer9000")


def test_unknown_hyperparameter_is_an_error():
    with pytest.raises(ValidationError, match="num_feature"):
        build_model({"architecture": "schnet", "num_feature": 8}, 2)


def test_e0s_must_match_species():
    model = build_model(helpers.full_hyperparameters("schnet"), 2)
    with pytest.raises(ValueError):
        Potential(model, helpers.full_hyperparameters("schnet"), [1, 6], [0.0])


def test_check_species_names_the_element():
    potential = helpers.build_potential("schnet", species=[1, 8], e0s=[0.0, 0.0])
    potential.check_species(torch.tensor([1, 8, 8]))
    with pytest.raises(UnknownElementError, match="Cu") as info:
        potential.check_species(torch.tensor([1, 29]), "frame 3")
    assert "frame 3" in str(info.value) and "H, O" in str(info.value)
    assert isinstance(info.value, MLFFError)


def test_outputs_and_shapes(architecture):
    potential = helpers.build_potential(architecture, scale=3.0, shift=0.5)
    graph = helpers.graph_of(helpers.ethanol(), potential.cutoff)
    before = {k: v.clone() for k, v in graph.items()}
    out = potential(graph, compute_stress=True)
    assert out[K.ENERGY].shape == (1,)
    assert out[K.NODE_ENERGY].shape == (9,)
    assert out[K.FORCES].shape == (9, 3)
    assert out[K.STRESS].shape == (1, 3, 3)
    torch.testing.assert_close(out[K.NODE_ENERGY].sum(), out[K.ENERGY][0])
    # the input graph is not modified
    assert set(graph) == set(before)
    for key, value in before.items():
        assert torch.equal(graph[key], value), key
    assert not graph[K.POSITIONS].requires_grad
    energy_only = potential(graph, compute_forces=False)
    assert set(energy_only) == {K.ENERGY, K.NODE_ENERGY}
    torch.testing.assert_close(energy_only[K.ENERGY], out[K.ENERGY])


def test_forces_sum_to_zero(architecture):
    potential = helpers.build_potential(architecture)
    for atoms in (helpers.ethanol(), helpers.copper()):
        forces = potential(helpers.graph_of(atoms, potential.cutoff))[K.FORCES]
        assert forces.abs().max() > 1e-4
        torch.testing.assert_close(forces.sum(0), torch.zeros(3, dtype=forces.dtype),
                                   rtol=0, atol=1e-12)


def test_scale_and_shift(architecture):
    atoms = helpers.ethanol()
    base = helpers.build_potential(architecture, scale=1.0, shift=0.0)
    scaled = helpers.build_potential(architecture, scale=2.5, shift=0.75)
    graph = helpers.graph_of(atoms, base.cutoff)
    e0 = sum(helpers.E0S[helpers.SPECIES.index(z)] for z in atoms.numbers)
    out, out_scaled = base(graph), scaled(graph)
    interaction = float(out[K.ENERGY].detach()[0]) - e0
    expected = e0 + 0.75 * len(atoms) + 2.5 * interaction
    assert float(out_scaled[K.ENERGY].detach()[0]) == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(out_scaled[K.FORCES], 2.5 * out[K.FORCES])


def test_float32_close_to_float64(architecture):
    atoms = helpers.copper()
    p64 = helpers.build_potential(architecture, scale=10.0)
    p32 = helpers.build_potential(architecture, scale=10.0, dtype=torch.float32)
    out64 = p64(helpers.graph_of(atoms, 4.0), compute_stress=True)
    out32 = p32(helpers.graph_of(atoms, 4.0, torch.float32), compute_stress=True)
    assert out32[K.ENERGY].dtype == torch.float64  # energies are summed in float64
    for key in (K.ENERGY, K.FORCES, K.STRESS):
        if key != K.ENERGY:
            assert out32[key].dtype == torch.float32
        torch.testing.assert_close(out32[key].double(), out64[key], rtol=1e-5, atol=1e-5)


def test_no_stress_for_non_periodic(architecture):
    potential = helpers.build_potential(architecture)
    slab = helpers.copper()
    slab.pbc = (True, True, False)
    out = potential(helpers.graph_of(slab, 4.0), compute_stress=True)
    assert out[K.STRESS].abs().max() == 0


def test_stress_without_forces(architecture):
    potential = helpers.build_potential(architecture)
    graph = helpers.graph_of(helpers.copper(), 4.0)
    both = potential(graph, compute_stress=True)
    only = potential(graph, compute_forces=False, compute_stress=True)
    assert K.FORCES not in only
    torch.testing.assert_close(only[K.STRESS], both[K.STRESS])


def test_create_graph_allows_training_on_forces(architecture):
    potential = helpers.build_potential(architecture)
    out = potential(helpers.graph_of(helpers.ethanol(), 4.0), create_graph=True)
    loss = out[K.FORCES].pow(2).sum()
    loss.backward()
    grads = [p.grad for p in potential.parameters() if p.grad is not None]
    assert grads and any(g.abs().max() > 0 for g in grads)


def test_single_atom_without_neighbours_has_no_force(architecture):
    potential = helpers.build_potential(architecture)
    out = potential(helpers.graph_of(Atoms("O", positions=[[1.0, 2.0, 3.0]]), 4.0))
    assert out[K.FORCES].abs().max() == 0
