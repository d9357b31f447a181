"""Every registered architecture implements the architecture contract (mlff.models.contract).

The tests run over ``registry.architectures()``, so a new architecture is checked without
being named here; only its tiny hyperparameters in ``tests/helpers.py`` are needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule
from scipy.spatial.transform import Rotation

from mlff.data import keys as K
from mlff.models import Potential, architectures, get_architecture, save_model
from mlff.models.contract import PRESET_SIZES, Architecture
from mlff.models.io import read_metadata
from mlff.models.potential import receptive_hops
from mlff.models.registry import build_model
from tests import helpers

SOURCE = Path(__file__).resolve().parents[2] / "src" / "mlff"
H, C, N, O = 1, 6, 7, 8


def _tiny(architecture: str, species=(H, C, O), seed: int = 0) -> Potential:
    potential = helpers.build_potential(architecture, species=species,
                                        e0s=[-1.0 - 0.1 * z for z in species], seed=seed)
    with torch.no_grad():  # per-species scales and shifts away from 1 and 0, so they matter
        for name, parameter in potential.model.named_parameters():
            if "scale_shift" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return potential


def _ethylamine_and_methanol():
    amine, alcohol = molecule("CH3CH2NH2"), molecule("CH3OH")
    amine.rattle(0.05, seed=1)
    alcohol.rattle(0.05, seed=2)
    return amine, alcohol


@pytest.fixture(params=architectures())
def name(request):
    return request.param


def test_every_registered_class_is_an_architecture(name):
    cls = get_architecture(name)
    assert issubclass(cls, Architecture)
    own = set().union(*(vars(k) for k in cls.__mro__[:cls.__mro__.index(Architecture)]))
    for method in ("receptive_hops", "invariant_features", "species_parameters", "presets"):
        assert method in own, f"{name} does not implement {method}"


def test_presets_are_valid_and_the_small_one_runs(name):
    cls = get_architecture(name)
    assert tuple(cls.presets) == PRESET_SIZES
    configs = [cls.Config.model_validate({"architecture": name, **cls.presets[size]})
               for size in PRESET_SIZES]
    assert len({config.model_dump_json() for config in configs}) == len(PRESET_SIZES)
    hyperparameters = configs[0].model_dump()
    potential = Potential(build_model(hyperparameters, 3), hyperparameters, [H, C, O],
                          [-1.0, -2.0, -3.0]).to(torch.float64).eval()
    out = potential(helpers.graph_of(helpers.ethanol(), potential.cutoff), compute_forces=False)
    assert torch.isfinite(out[K.ENERGY]).all()


def test_receptive_hops_come_from_the_architecture(name):
    potential = _tiny(name)
    hops = type(potential.model).receptive_hops(potential.model.config)
    assert isinstance(hops, int) and hops >= 1
    assert potential.receptive_hops() == hops == receptive_hops(potential.hyperparameters)


def test_invariant_features_are_invariant(name):
    potential = _tiny(name)
    atoms = helpers.ethanol()
    features = potential.model.invariant_features(
        potential.inputs(helpers.graph_of(atoms, potential.cutoff)))
    assert features.dim() == 2 and features.shape[0] == len(atoms) and features.shape[1] > 0
    assert torch.isfinite(features).all() and features.abs().sum() > 0
    rotated = atoms.copy()
    rotated.positions = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).apply(atoms.positions)
    again = potential.model.invariant_features(
        potential.inputs(helpers.graph_of(rotated, potential.cutoff)))
    torch.testing.assert_close(again, features, rtol=0, atol=1e-9)


def test_species_parameters_name_every_tensor_that_depends_on_the_species(name):
    hyperparameters = helpers.full_hyperparameters(name)
    torch.manual_seed(0)
    two, three = build_model(hyperparameters, 2), build_model(hyperparameters, 3)
    index = two.species_parameters()
    state = two.state_dict()
    changing = {key for key, value in three.state_dict().items()
                if key not in state or state[key].shape != value.shape}
    assert changing <= set(three.species_parameters())
    for key, entry in index.items():
        assert entry.species.shape == state[key].shape == entry.factor.shape, key
        assert entry.species.max() < 2 and entry.species.min() >= -1, key
    assert any((entry.species >= 0).any() for entry in index.values())


def test_grow_species_keeps_old_predictions_and_trains_the_new_element(name):
    old = _tiny(name, species=(H, C, O))
    amine, alcohol = _ethylamine_and_methanol()
    graph = helpers.graph_of(alcohol, old.cutoff)
    before = old(graph, compute_stress=False)

    torch.manual_seed(5)
    model, fresh = old.model.grow_species([0, 1, 3], 4)  # H C O -> H C N O
    grown = Potential(model, old.hyperparameters, [H, C, N, O],
                      [*old.e0s.tolist()[:2], -1.7, old.e0s.tolist()[2]]).to(torch.float64).eval()
    after = grown(graph)
    np.testing.assert_allclose(after[K.ENERGY].detach(), before[K.ENERGY].detach(),
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(after[K.FORCES], before[K.FORCES], rtol=0, atol=1e-10)
    assert type(model) is type(old.model) and model.num_species == 4

    # the new element has entries of its own, and the energy of a structure with it
    # depends on them
    assert fresh and any(mask.any() for mask in fresh.values())
    energy = grown(helpers.graph_of(amine, old.cutoff), compute_forces=False)[K.ENERGY].sum()
    parameters = dict(model.named_parameters())
    trainable = [key for key, mask in fresh.items() if key in parameters and mask.any()]
    grads = torch.autograd.grad(energy, [parameters[key] for key in trainable], allow_unused=True)
    assert any(g is not None and (g[fresh[k]] != 0).any() for k, g in zip(trainable, grads))


def test_model_files_record_the_conventions(name, tmp_path):
    potential = _tiny(name)
    metadata = read_metadata(save_model(potential, tmp_path / "m.mlff"))
    assert metadata["conventions"] == type(potential.model).conventions()
    if any("o3" in type(m).__module__ for m in potential.model.modules()):
        assert "e3nn" in metadata["conventions"] and "coupling" in metadata["conventions"]


def test_no_architecture_is_named_outside_the_registry():
    """Architecture facts live in the architectures: the Potential, the uncertainty code
    and training never test for a name."""
    pattern = re.compile(r"\b(" + "|".join(architectures()) + r")\b", re.IGNORECASE)
    files = [SOURCE / "models" / "potential.py", *(SOURCE / "uq").rglob("*.py"),
             *(SOURCE / "train").rglob("*.py")]
    found = [f"{path.relative_to(SOURCE)}:{number}: {line.strip()}"
             for path in files
             for number, line in enumerate(path.read_text().splitlines(), 1)
             if pattern.search(line)]
    assert found == []


MACE_VARIANTS = {
    "nonlinear": {"interaction": "nonlinear", "interaction_first": "nonlinear"},
    "density_first": {"interaction_first": "density", "interaction": "att_residual"},
    "edge_irreps": {"edge_irreps": "8x0e+8x1o", "edge_irreps_first": True},
    "so3_odd_scalars": {"use_so3": True, "hidden_irreps": "8x0e+8x0o+8x1e", "max_ell": 2},
}


@pytest.mark.parametrize("variant", sorted(MACE_VARIANTS))
def test_mace_variants_grow_species_with_old_predictions_unchanged(variant):
    """Every MACE interaction block names its species-dependent tensors, so fine-tuning a
    model of any block kind (an imported one, say) on a new element keeps the old ones."""
    hyperparameters = helpers.full_hyperparameters("mace", **MACE_VARIANTS[variant])
    torch.manual_seed(0)
    two, three = build_model(hyperparameters, 2), build_model(hyperparameters, 3)
    state = two.state_dict()
    changing = {key for key, value in three.state_dict().items()
                if key not in state or state[key].shape != value.shape}
    assert changing <= set(three.species_parameters())

    old = helpers.build_potential("mace", species=(H, C, O), e0s=(-1.1, -1.6, -1.8), seed=1,
                                  **MACE_VARIANTS[variant])
    _, alcohol = _ethylamine_and_methanol()
    graph = helpers.graph_of(alcohol, old.cutoff)
    before = old(graph, compute_stress=False)
    model, _ = old.model.grow_species([0, 1, 3], 4)
    grown = Potential(model, old.hyperparameters, [H, C, N, O],
                      [*old.e0s.tolist()[:2], -1.7, old.e0s.tolist()[2]]).to(torch.float64).eval()
    after = grown(graph)
    np.testing.assert_allclose(after[K.ENERGY].detach(), before[K.ENERGY].detach(),
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(after[K.FORCES], before[K.FORCES], rtol=0, atol=1e-10)
