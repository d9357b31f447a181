"""MACE and NequIP: the dense (fast) neighbour sums equal the e3nn reference path.

Both architectures keep the e3nn tensor product + scatter sum they were written with as a
reference (``use_dense = False``); the speed work must not change energies, forces or
stresses beyond rounding (1e-10 in float64).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from mlff.nn.dense import dense_slots, worth_padding
from tests import helpers


def set_dense(potential, enabled: bool) -> None:
    for module in potential.model.modules():
        if hasattr(module, "use_dense"):
            module.use_dense = enabled


def lonely_cluster() -> Atoms:
    """One dense cluster and far-away atoms: padding would waste most slots (scatter path)."""
    rng = np.random.default_rng(5)  # a 2x2x3 grid 1.2 Å apart, jittered: no atoms overlap
    grid = 1.2 * np.stack(np.meshgrid(np.arange(2), np.arange(2), np.arange(3)), -1).reshape(-1, 3)
    cluster = grid + rng.uniform(-0.15, 0.15, size=grid.shape)
    loners = 20.0 + 10.0 * np.stack(np.meshgrid(*[np.arange(3)] * 3), -1).reshape(-1, 3)
    return Atoms("Cu12" + "C27", positions=np.vstack([cluster, loners]))


STRUCTURES = {
    "copper": lambda: helpers.copper().repeat((2, 2, 2)),
    "ethanol": helpers.ethanol,
    "cluster": lonely_cluster,
}


@pytest.mark.parametrize("structure", sorted(STRUCTURES))
@pytest.mark.parametrize("architecture, overrides", [
    ("mace", {}),
    ("mace", {"max_L": 0, "max_ell": 2}),
    # biased radial MLPs: empty slots must stay out of the density
    ("mace", {"interaction": "nonlinear", "interaction_first": "nonlinear", "max_L": 1,
              "max_ell": 2}),
    ("mace", {"num_channels": 4, "hidden_irreps": "4x0e+4x1e", "use_so3": True,
              "edge_irreps": "3x0e+3x1e", "edge_irreps_first": True, "max_ell": 2,
              "interaction": "nonlinear", "apply_cutoff": False}),
    ("nequip", {}),
    ("nequip", {"l_max": 1, "parity": True, "num_layers": 3}),
])
def test_dense_equals_reference(architecture, overrides, structure):
    potential = helpers.build_potential(architecture, **overrides)
    atoms = STRUCTURES[structure]()
    graph = helpers.graph_of(atoms, potential.cutoff)
    periodic = bool(atoms.pbc.all())
    results = []
    for dense in (True, False):
        set_dense(potential, dense)
        out = potential(graph, compute_forces=True, compute_stress=periodic)
        results.append({key: value.detach() for key, value in out.items()})
    fast, reference = results
    assert set(fast) == set(reference)
    for key in reference:
        torch.testing.assert_close(fast[key], reference[key], rtol=0, atol=1e-10)
    assert reference["forces"].abs().max() > 1e-3  # a real test: forces are not all zero


def test_the_cluster_takes_the_scatter_path():
    graph = helpers.graph_of(lonely_cluster(), 4.0)
    receiver = graph["edge_index"][1]
    _, width = dense_slots(receiver, len(graph["positions"]))
    assert not worth_padding(receiver.numel(), len(graph["positions"]), width)


def test_training_gradients_agree():
    """The fast path is used in training too: parameter gradients of a force loss agree."""
    potential = helpers.build_potential("nequip").train()
    graph = helpers.graph_of(helpers.copper(), potential.cutoff)
    grads = []
    for dense in (True, False):
        set_dense(potential, dense)
        out = potential(graph, compute_forces=True, create_graph=True)
        loss = out["forces"].square().sum() + out["energy"].sum()
        grads.append(torch.autograd.grad(loss, list(potential.parameters()), allow_unused=True))
    for fast, reference in zip(*grads):
        if reference is None:
            assert fast is None or fast.abs().max() == 0
            continue
        torch.testing.assert_close(fast, reference, rtol=0, atol=1e-9)
