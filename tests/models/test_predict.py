"""The evaluation kernel: one predict for a Potential and a committee alike."""

from __future__ import annotations

import numpy as np
import torch

from mlff.data import keys as K
from mlff.data.dataset import GraphDataset
from mlff.data.readers import structure_from_atoms
from mlff.models.predict import EnergyModel, batched_outputs, predict
from mlff.uq.committee import Committee
from tests import helpers


def _dataset(cutoff):
    frames = [helpers.ethanol(seed=k) for k in range(3)] + [helpers.copper(seed=1)]
    return GraphDataset.from_structures([structure_from_atoms(a) for a in frames], cutoff)


def test_potential_and_committee_are_energy_models_with_one_predict():
    members = [helpers.build_potential("schnet", seed=k) for k in range(2)]
    committee = Committee(members)
    assert isinstance(members[0], EnergyModel) and isinstance(committee, EnergyModel)
    dataset = _dataset(members[0].cutoff)

    single = [predict(member, dataset, batch_size=3) for member in members]
    mean = predict(committee, dataset, batch_size=2)
    assert single[0].stress[-1] is not None and single[0].stress[0] is None  # copper: periodic
    np.testing.assert_allclose(mean.energy, (single[0].energy + single[1].energy) / 2,
                               rtol=0, atol=1e-10)
    for k in range(len(dataset)):
        np.testing.assert_allclose(mean.forces[k], (single[0].forces[k] + single[1].forces[k]) / 2,
                                   rtol=0, atol=1e-10)

    # the batch kernel gives the same energies, batch by batch, with no autograd graph
    # when forces are not asked for
    energies = []
    for batch, out in batched_outputs(members[0], dataset, 2, compute_forces=False):
        assert K.FORCES not in out and not out[K.ENERGY].requires_grad
        assert batch[K.POSITIONS].dtype == members[0].dtype
        energies.append(out[K.ENERGY])
    np.testing.assert_allclose(torch.cat(energies).numpy(), single[0].energy, rtol=0, atol=1e-12)

    # selection features of a committee are its members' (shared architecture)
    graph = helpers.graph_of(helpers.ethanol(), committee.cutoff)
    torch.testing.assert_close(committee.invariant_features(graph),
                               members[0].invariant_features(graph))
