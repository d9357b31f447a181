"""The sevennet architecture: its variants pass the physics battery; parts behave as documented."""

from __future__ import annotations

import pytest
import torch
from e3nn import o3

from mlff.models.registry import get_architecture
from mlff.models.sevennet import SevenNet, default_irreps
from mlff.nn.radial import XPLORCutoff
from tests import helpers
from tests.models.physics import ModelPhysicsTests

# SevenNet-0's form (all-even harmonics, explicit irreps, XPLOR switching, unnormalised
# harmonics as in its 22May2024 release) and the multi-fidelity form, at toy sizes
VARIANTS = {
    "sevennet0-like": {"parity": False, "irreps": ["8x0e", "8x0e+4x1e+2x2e", "8x0e"],
                       "num_layers": 2, "cutoff_function": "xplor", "cutoff_on": 3.5},
    "unnormalized-sh": {"normalize_sh": False, "self_connection": "nequip", "num_layers": 2},
    "multi-fidelity": {"num_modalities": 2, "modality": 1, "num_layers": 2,
                       "modal_inputs": ["embedding", "linear_1", "linear_2", "readout"]},
}


def hyperparameters_of(variant: str) -> dict:
    base = {"architecture": "sevennet", "cutoff": 4.0, "num_features": 8, "l_max": 2,
            "num_radial": 6, "radial_mlp": [16], "avg_num_neighbors": 12.0}
    return {**base, **VARIANTS[variant]}


class TestVariantPhysics(ModelPhysicsTests):
    """The battery on SevenNet-0's form with the other options on (the default form runs in
    test_physics.py)."""

    @pytest.fixture
    def hyperparameters(self):
        return {**hyperparameters_of("sevennet0-like"), "normalize_sh": False,
                "self_connection": "nequip", **VARIANTS["multi-fidelity"]}


def _random_parameters(model: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator,
                                             dtype=parameter.dtype))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_dense_neighbour_sums_equal_the_e3nn_product(variant):
    options = {k: v for k, v in hyperparameters_of(variant).items()
               if k not in ("architecture", "cutoff")}
    potential = helpers.build_potential("sevennet", **options)
    _random_parameters(potential.model)
    atoms = helpers.copper().repeat((2, 2, 2))
    atoms.rattle(0.1, seed=3)
    graph = helpers.graph_of(atoms, potential.cutoff)
    dense = potential(graph)
    potential.model.use_dense = False
    scatter = potential(graph)
    torch.testing.assert_close(dense["energy"], scatter["energy"], rtol=0, atol=1e-10)
    torch.testing.assert_close(dense["forces"], scatter["forces"], rtol=0, atol=1e-10)


def test_the_fidelity_changes_the_energy():
    energies = []
    for modality in (0, 1):
        potential = helpers.build_potential(
            "sevennet", **{**{k: v for k, v in hyperparameters_of("multi-fidelity").items()
                              if k not in ("architecture", "cutoff")}, "modality": modality})
        _random_parameters(potential.model)
        graph = helpers.graph_of(helpers.ethanol(), potential.cutoff)
        energies.append(float(potential(graph, compute_forces=False)["energy"]))
    assert abs(energies[0] - energies[1]) > 1e-6


def test_xplor_switching_is_one_then_smoothly_zero():
    cutoff = XPLORCutoff(5.0, 4.5)
    r = torch.tensor([1.0, 4.4999, 4.5, 4.75, 4.9999, 5.0, 5.5], dtype=torch.float64,
                     requires_grad=True)
    value = cutoff(r)
    slope, = torch.autograd.grad(value.sum(), r)
    assert value[0] == 1.0 and value[1] == 1.0 and value[-1] == 0.0 and value[-2] == 0.0
    assert 0.0 < float(value[3]) < 1.0
    assert abs(float(value[4])) < 1e-6 and abs(float(slope[4])) < 1e-2  # C1 at the cutoff
    assert abs(float(value[2]) - 1.0) < 1e-12 and abs(float(slope[2])) < 1e-9  # and at ron
    with pytest.raises(ValueError, match="cutoff_on"):
        XPLORCutoff(5.0, 5.0)


def test_default_irreps_follow_the_products():
    sh = o3.Irreps.spherical_harmonics(2)
    irreps = default_irreps(8, 2, sh, 3)
    assert [str(i) for i in irreps] == ["8x0e", "8x0e+8x1o+8x2e",
                                        "8x0e+8x1o+8x1e+8x2o+8x2e", "8x0e"]


@pytest.mark.parametrize(("change", "message"), [
    ({"irreps": ["8x0e", "8x0e"]}, "num_layers \\+ 1"),
    ({"conv_denominators": [1.0]}, "conv_denominators"),
    ({"cutoff_function": "xplor", "cutoff_on": 4.0}, "cutoff_on"),
    ({"num_modalities": 2, "modality": 2}, "modality"),
    ({"modal_inputs": ["output"]}, "modal_inputs"),
])
def test_inconsistent_hyperparameters_are_refused(change, message):
    config = {"architecture": "sevennet", "cutoff": 4.0, "num_layers": 2, **change}
    with pytest.raises(ValueError, match=message):
        get_architecture("sevennet").Config.model_validate(config)


def test_the_last_layer_must_output_even_scalars():
    config = SevenNet.Config.model_validate(
        {"architecture": "sevennet", "num_layers": 1, "irreps": ["8x0e", "8x0e+4x1o"]})
    with pytest.raises(ValueError, match="even scalars"):
        SevenNet(config, 2)
