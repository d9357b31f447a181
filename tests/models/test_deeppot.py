"""DeepPot-SE internals: the switched 1/r, the per-pair nets, statistics, and that it learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from mlff.data import collate
from mlff.data import keys as K
from mlff.models import save_model
from mlff.models.deeppot import smooth_inverse_distance
from mlff.uq.io import load_model
from tests import helpers

CUTOFF = 4.0


def deeppot(seed: int = 0, **overrides):
    return helpers.build_potential("deeppot", cutoff=CUTOFF, scale=10.0, seed=seed, **overrides)


def test_switched_inverse_distance_is_twice_differentiable():
    rs, rc = 1.0, 4.0
    r = torch.linspace(0.5, 4.5, 4001, dtype=torch.float64)
    s = smooth_inverse_distance(r, rs, rc)
    inside = r < rs
    torch.testing.assert_close(s[inside], 1 / r[inside], rtol=1e-15, atol=0)
    assert (s[r >= rc] == 0).all()
    assert (s[(r > rs) & (r < rc)] < 1 / r[(r > rs) & (r < rc)]).all()
    # first and second derivatives are continuous at rs and rc
    x = torch.tensor([rs, rc], dtype=torch.float64)
    for h in (1e-4, 1e-5):
        for side in (-1.0, 1.0):
            point = (x + side * h).requires_grad_(True)
            (d1,) = torch.autograd.grad(smooth_inverse_distance(point, rs, rc).sum(), point,
                                        create_graph=True)
            (d2,) = torch.autograd.grad(d1.sum(), point)
            expected_d1 = torch.tensor([-1 / rs**2, 0.0], dtype=torch.float64)
            expected_d2 = torch.tensor([2 / rs**3, 0.0], dtype=torch.float64)
            torch.testing.assert_close(d1.detach(), expected_d1, rtol=0, atol=50 * h)
            torch.testing.assert_close(d2, expected_d2, rtol=0, atol=5000 * h)


@pytest.mark.parametrize("background", [False, True], ids=["dimer", "in-a-molecule"])
def test_energy_and_forces_vanish_smoothly_at_the_cutoff(background):
    # an O atom moves out along x from a C atom (alone, or with two H atoms behind the C,
    # farther from the O): the energy approaches its value beyond the cutoff as δ³
    # (δ = cutoff - distance) and the force on the O vanishes as δ², continuously
    potential = deeppot()
    others = [("H", [-0.6, 0.8, 0.0]), ("H", [-0.5, -0.5, 0.7])] if background else []

    def graph(d):
        symbols = "CO" + "".join(s for s, _ in others)
        positions = [[0.0, 0.0, 0.0], [d, 0.0, 0.0]] + [p for _, p in others]
        return helpers.graph_of(Atoms(symbols, positions=positions), CUTOFF)

    deltas = np.array([1.0, 0.1, 0.03, 0.01, 1e-3, -1e-3, -0.5])
    energies, force_on_o = [], []
    for delta in deltas:
        out = potential(graph(CUTOFF - delta))
        energies.append(float(out[K.ENERGY][0].detach()))
        force_on_o.append(float(out[K.FORCES][1].norm()))
    gaps = np.abs(np.array(energies) - energies[-1])
    force_on_o = np.array(force_on_o)
    assert gaps[0] > 1e-4 and force_on_o[0] > 1e-4  # it does interact inside
    for k in range(1, 4):  # δ → 0: E - E_far ∝ δ³, |F| ∝ δ²
        ratio = deltas[k + 1] / deltas[k]
        assert gaps[k + 1] <= 1.5 * gaps[k] * ratio**3
        assert force_on_o[k + 1] <= 1.5 * force_on_o[k] * ratio**2
    assert gaps[4] < 1e-9 and force_on_o[4] < 1e-6
    assert gaps[5] == 0 and force_on_o[5] == 0


def descriptor(potential, atoms):
    graph = helpers.graph_of(atoms, potential.cutoff)
    graph[K.SPECIES] = potential.species_table[graph[K.ATOMIC_NUMBERS]]
    sender, receiver = graph[K.EDGE_INDEX]
    graph[K.EDGE_VECTORS] = graph[K.POSITIONS][receiver] - graph[K.POSITIONS][sender]
    graph[K.EDGE_LENGTHS] = graph[K.EDGE_VECTORS].norm(dim=-1)
    with torch.no_grad():
        return potential.model.descriptor(graph)


@pytest.mark.parametrize("type_one_side", [False, True])
def test_embedding_nets_per_species_pair(type_one_side):
    potential = deeppot(type_one_side=type_one_side)
    num = len(helpers.SPECIES)
    assert len(potential.model.embedding_nets) == (num if type_one_side else num * num)
    assert len(potential.model.fitting_nets) == num

    def dimer(a, b):
        return Atoms(a + b, positions=[[0, 0, 0], [2.0, 0, 0]])

    # the neighbour's species changes the central atom's descriptor ...
    assert not torch.allclose(descriptor(potential, dimer("C", "O"))[0],
                              descriptor(potential, dimer("C", "H"))[0])
    # ... and, per pair, so does the central atom's own species (same neighbour)
    same = torch.allclose(descriptor(potential, dimer("C", "O"))[0],
                          descriptor(potential, dimer("H", "O"))[0])
    assert same == type_one_side
    # swapping the species of two atoms changes the energy
    atoms = Atoms("COH", positions=[[0, 0, 0], [1.3, 0, 0], [-0.6, 0.9, 0]])
    swapped = Atoms("OCH", positions=atoms.positions)
    e = [float(potential(helpers.graph_of(a, CUTOFF), compute_forces=False)[K.ENERGY][0].detach())
         for a in (atoms, swapped)]
    assert abs(e[0] - e[1]) > 1e-6


def reference_energies(potential, atoms) -> torch.Tensor:
    """Per-atom outputs of the model by explicit loops over atoms and neighbours (no images)."""
    model = potential.model
    species = potential.species_table[torch.as_tensor(atoms.numbers)]
    positions = torch.as_tensor(atoms.positions)
    m2 = model.axis_neurons
    out = []
    with torch.no_grad():
        for i in range(len(atoms)):
            t = None
            for j in range(len(atoms)):
                vector = positions[j] - positions[i]
                r = vector.norm()
                if i == j or r >= model.cutoff:
                    continue
                s = smooth_inverse_distance(r, model.rcut_smth, model.cutoff)
                row = torch.cat([s.view(1), s * vector / r]) / model.env_std[species[i]]
                s_hat = (s - model.env_mean[species[i], 0]) / model.env_std[species[i], 0]
                pair = int(species[i]) * model.num_species + int(species[j])
                g = model.embedding_nets[pair](s_hat.view(1, 1))[0]
                term = torch.outer(row, g)
                t = term if t is None else t + term
            t = t / model.norm
            d = (t.T @ t[:, :m2]).reshape(1, -1)
            out.append(model.fitting_nets[int(species[i])](d)[0])
    return torch.stack(out)


def test_batched_model_equals_explicit_loops():
    potential = deeppot()
    potential.model.fit_statistics(
        [helpers.graph_of(a, CUTOFF) for a in (helpers.ethanol(), helpers.water())],
        potential.species_table,
    )
    atoms = helpers.ethanol()
    graph = helpers.graph_of(atoms, CUTOFF)
    graph[K.SPECIES] = potential.species_table[graph[K.ATOMIC_NUMBERS]]
    sender, receiver = graph[K.EDGE_INDEX]
    graph[K.EDGE_VECTORS] = graph[K.POSITIONS][receiver] - graph[K.POSITIONS][sender]
    graph[K.EDGE_LENGTHS] = graph[K.EDGE_VECTORS].norm(dim=-1)
    with torch.no_grad():
        batched = potential.model(graph)
    reference = reference_energies(potential, atoms)
    torch.testing.assert_close(batched, reference, rtol=1e-12, atol=1e-12)
    # the exportable path (per-type rows found by nonzero, as torch.export needs) too
    potential.model.exportable = True
    with torch.no_grad():
        exportable = potential.model(graph)
    torch.testing.assert_close(exportable, reference, rtol=1e-12, atol=1e-12)


def test_fit_statistics_normalises_the_environment(tmp_path):
    potential = deeppot()
    structures = [helpers.ethanol(seed=s) for s in range(3)] + [helpers.copper(seed=4)]
    graphs = [helpers.graph_of(a, CUTOFF) for a in structures]
    before = potential(collate(graphs), compute_forces=False)[K.ENERGY]
    model = potential.model
    model.fit_statistics(graphs, potential.species_table)
    assert model.env_mean.dtype == model.env_std.dtype == torch.float64
    # s over the edges of each central species has mean 0 and std 1 after normalisation
    batch = collate(graphs)
    sender, receiver = batch[K.EDGE_INDEX]
    cells = batch[K.CELL][batch[K.BATCH][sender]]
    vectors = (batch[K.POSITIONS][receiver] - batch[K.POSITIONS][sender]
               + torch.einsum("ei,eij->ej", batch[K.EDGE_SHIFT], cells))
    s = smooth_inverse_distance(vectors.norm(dim=-1), model.rcut_smth, model.cutoff)
    central = potential.species_table[batch[K.ATOMIC_NUMBERS]][sender]
    for t in range(len(helpers.SPECIES)):
        s_hat = (s[central == t] - model.env_mean[t, 0]) / model.env_std[t, 0]
        assert float(s_hat.mean()) == pytest.approx(0.0, abs=1e-12)
        assert float(s_hat.std(unbiased=False)) == pytest.approx(1.0, rel=1e-12)
    assert (model.env_mean[:, 1:] == 0).all()
    assert (model.env_std[:, 1:] != 1).all()
    after = potential(collate(graphs), compute_forces=False)[K.ENERGY]
    assert not torch.allclose(before, after)
    # the statistics are part of the model file; batches and graph dicts with species work too
    loaded = load_model(save_model(potential, tmp_path / "m.mlff"))
    torch.testing.assert_close(loaded(collate(graphs), compute_forces=False)[K.ENERGY], after,
                               rtol=0, atol=0)
    mean, std = model.env_mean.clone(), model.env_std.clone()
    model.fit_statistics([batch], potential.species_table)
    torch.testing.assert_close(model.env_mean, mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(model.env_std, std, rtol=1e-12, atol=1e-12)


def test_statistics_are_set_by_the_first_training_batch_only(tmp_path):
    # like DeePMD-kit's davg/dstd from the first batches: the first forward in training
    # mode sets them unless they were fitted or loaded; evaluation never does
    graphs = [helpers.graph_of(a, CUTOFF) for a in (helpers.ethanol(), helpers.water())]
    batch = collate(graphs)
    potential = deeppot()  # eval mode
    model = potential.model
    potential(batch, compute_forces=False)
    assert not model.statistics_fitted and (model.env_std == 1).all()
    potential.train()
    potential(batch, compute_forces=False)
    assert model.statistics_fitted
    fitted = model.env_std.clone()
    assert not torch.allclose(fitted, torch.ones_like(fitted))
    reference = deeppot().model
    reference.fit_statistics(graphs, potential.species_table)
    torch.testing.assert_close(fitted, reference.env_std, rtol=1e-12, atol=0)
    # a second training batch does not change them
    potential(collate([helpers.graph_of(helpers.copper(), CUTOFF)]), compute_forces=False)
    torch.testing.assert_close(model.env_std, fitted, rtol=0, atol=0)
    # nor does training a loaded model; an unfitted model's file stays unfitted
    loaded = load_model(save_model(potential, tmp_path / "fitted.mlff")).train()
    loaded(collate([helpers.graph_of(helpers.copper(), CUTOFF)]), compute_forces=False)
    torch.testing.assert_close(loaded.model.env_std, fitted, rtol=0, atol=0)
    fresh = load_model(save_model(deeppot(), tmp_path / "fresh.mlff"))
    assert fresh.model._needs_statistics and not fresh.model.statistics_fitted


def test_float32_and_statistics_follow_the_dtype():
    potential = deeppot(dtype=torch.float32)
    assert potential.model.env_mean.dtype == torch.float32
    atoms = helpers.ethanol()
    out32 = potential(helpers.graph_of(atoms, CUTOFF, torch.float32))
    out64 = deeppot()(helpers.graph_of(atoms, CUTOFF))
    assert out32[K.FORCES].dtype == torch.float32
    torch.testing.assert_close(out32[K.FORCES].double(), out64[K.FORCES], rtol=1e-4, atol=1e-4)


def test_config_checks():
    from mlff.models import build_model

    with pytest.raises(ValueError, match="rcut_smth"):
        build_model({"architecture": "deeppot", "cutoff": 3.0, "rcut_smth": 3.0}, 2)
    with pytest.raises(ValueError, match="axis_neurons"):
        build_model({"architecture": "deeppot", "embedding_neurons": [4, 8], "axis_neurons": 9}, 2)
    model = build_model({"architecture": "deeppot"}, 2)  # DeePMD's defaults
    assert model.norm == 4.0 and model.cutoff == 6.0 and model.rcut_smth == 0.5
    assert model.fitting_nets[0].layers[0].in_features == 100 * 16
