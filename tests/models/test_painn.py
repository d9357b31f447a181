"""PaiNN internals: vector features rotate with the structure, scalars do not."""

from __future__ import annotations

import pytest
import torch

from mlff.data import keys as K
from tests import helpers
from tests.models.physics import random_rotation, transformed


def features(potential, atoms):
    """Final (s, v) of PaiNN, captured by a forward hook on the last update block."""
    captured = {}
    update = potential.model.updates[-1]

    def hook(module, inputs, outputs):
        s, v = inputs
        ds, dv = outputs
        captured["s"], captured["v"] = (s + ds).detach(), (v + dv).detach()

    handle = update.register_forward_hook(hook)
    try:
        potential(helpers.graph_of(atoms, potential.cutoff), compute_forces=False)
    finally:
        handle.remove()
    return captured["s"], captured["v"]


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "rotoreflection"])
@pytest.mark.parametrize("structure", ["ethanol", "copper"])
def test_vector_features_are_equivariant(structure, proper):
    potential = helpers.build_potential("painn")
    atoms = helpers.ethanol() if structure == "ethanol" else helpers.copper()
    s, v = features(potential, atoms)
    assert v.shape == (len(atoms), 3, potential.model.num_features)
    assert v.abs().max() > 1e-3  # the vectors carry information
    for seed in range(2):
        rotation = random_rotation(seed, proper)
        s_rot, v_rot = features(potential, transformed(atoms, rotation, (0.5, -1.0, 2.0)))
        r = torch.tensor(rotation, dtype=torch.float64)
        torch.testing.assert_close(v_rot, torch.einsum("ij,njf->nif", r, v), rtol=0, atol=1e-10)
        torch.testing.assert_close(s_rot, s, rtol=0, atol=1e-10)


def test_hook_captures_the_features_of_the_last_layer():
    # the hook sees the last layer: a wrong hook (e.g. on the first message) would give
    # different features from a run through the layers by hand
    potential = helpers.build_potential("painn")
    atoms = helpers.ethanol()
    s_hook, v_hook = features(potential, atoms)
    model = potential.model
    graph = helpers.graph_of(atoms, potential.cutoff)
    sender, receiver = graph[K.EDGE_INDEX]
    vectors = graph[K.POSITIONS][receiver] - graph[K.POSITIONS][sender]
    lengths = vectors.norm(dim=-1)
    filters = model.filter_net(model.radial(lengths)) * model.envelope(lengths).unsqueeze(-1)
    filters = torch.split(filters, 3 * model.num_features, dim=-1)
    s = model.embedding(potential.species_table[graph[K.ATOMIC_NUMBERS]])
    v = s.new_zeros((len(atoms), 3, model.num_features))
    with torch.no_grad():
        for layer in range(model.num_layers):
            ds, dv = model.messages[layer](
                s, v, filters[layer], vectors / lengths.unsqueeze(-1), sender, receiver
            )
            s, v = s + ds, v + dv
            ds, dv = model.updates[layer](s, v)
            s, v = s + ds, v + dv
    torch.testing.assert_close(s_hook, s, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v_hook, v, rtol=1e-12, atol=1e-12)
