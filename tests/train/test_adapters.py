"""Element-local fine-tuning (finetune.adapters): the adapters start at zero, act on
atoms of their elements only, give forces = -dE/dr, save, load and deploy; in training
only element-local parameters move, so structures without the adapted elements keep
the pretrained predictions exactly."""

import warnings

import ase.io
import pytest
import torch
from ase.build import bulk, molecule

from mlff.calculators import MLFFCalculator
from mlff.calculators.lammps.deploy import check_against_potential, deploy
from mlff.calculators.lammps.external import load_deployed
from mlff.data import keys as K
from mlff.data.graph import collate, structure_to_graph, to_device
from mlff.data.readers import Structure
from mlff.errors import ConfigError, DataWarning
from mlff.imports.common import imported_potential, provenance
from mlff.models.io import save_model
from mlff.models.potential import Potential
from mlff.models.registry import build_model
from mlff.train.adapters import with_adapters
from mlff.train.config import validate_config
from mlff.train.trainer import train
from mlff.uq.io import load_model
from tests.helpers import assert_forces_are_minus_energy_gradient

from .conftest import ETHANOL

TINY = {"architecture": "sevennet", "cutoff": 4.0, "num_layers": 2, "num_features": 4,
        "l_max": 1, "num_radial": 4, "radial_mlp": [8], "avg_num_neighbors": 6.0}
SPECIES = [8, 1, 29, 6]  # O, H, Cu, C: an imported model's order


def _potential(adapters=None, perturb=False):
    torch.manual_seed(0)
    model = build_model(dict(TINY), len(SPECIES))
    hyperparameters = dict(TINY)
    if adapters:
        model, hyperparameters = with_adapters(model, hyperparameters, SPECIES, adapters)
    potential = Potential(model, hyperparameters, SPECIES, [-1.0, -2.0, -3.0, -4.0])
    potential = potential.to(dtype=torch.float64)
    if perturb:
        with torch.no_grad():
            for name, parameter in potential.named_parameters():
                if ".adapters." in name:
                    parameter.normal_(0.0, 0.5)
    return potential


def _graphs(potential, *structures):
    graphs = [structure_to_graph(Structure(atoms=a), potential.cutoff) for a in structures]
    return to_device(collate(graphs), potential.device, potential.dtype)


def _copper():
    copper = bulk("Cu", "fcc", 3.6, cubic=True)
    copper.rattle(0.05, seed=1)
    return copper


def test_adapters_start_as_the_model_and_act_on_their_elements_only():
    plain, zero, trained = _potential(), _potential(["H", "C"]), _potential(["H", "C"], True)
    assert zero.hyperparameters["adapters"] == [1, 3]  # species indices of H and C
    water, copper, ethanol = molecule("H2O"), _copper(), molecule("CH3CH2OH")
    batch = _graphs(plain, water, copper, ethanol)
    reference = plain(batch, compute_forces=True)
    for key in (K.ENERGY, K.FORCES):
        torch.testing.assert_close(zero(batch, compute_forces=True)[key], reference[key],
                                   rtol=0, atol=0)
    changed = trained(batch, compute_forces=True)
    # copper has no adapted atom: exactly as before; water and ethanol have H (and C)
    n_water, n_copper = len(water), len(copper)
    copper_forces = slice(n_water, n_water + n_copper)
    torch.testing.assert_close(changed[K.FORCES][copper_forces],
                               reference[K.FORCES][copper_forces], rtol=0, atol=0)
    assert changed[K.ENERGY][1] == reference[K.ENERGY][1]
    assert abs(changed[K.ENERGY][0] - reference[K.ENERGY][0]) > 1e-4
    assert abs(changed[K.ENERGY][2] - reference[K.ENERGY][2]) > 1e-4


def test_adapted_forces_are_minus_the_energy_gradient():
    potential = _potential(["H", "C", "O"], perturb=True)
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=2)
    assert_forces_are_minus_energy_gradient(lambda: MLFFCalculator(potential), atoms)


def test_an_adapted_model_saves_loads_and_deploys(tmp_path):
    potential = _potential(["H", "C", "O"], perturb=True)
    path = save_model(potential, tmp_path / "adapted.mlff")
    loaded = load_model(path)
    assert loaded.hyperparameters["adapters"] == [0, 1, 3]
    batch = _graphs(potential, molecule("CH3CH2OH"), _copper())
    torch.testing.assert_close(loaded(batch, compute_forces=True)[K.FORCES],
                               potential(batch, compute_forces=True)[K.FORCES], rtol=0, atol=0)
    result = deploy(path, tmp_path / "out", build=False, format="torchscript",
                    structure=molecule("CH3CH2OH"))
    assert check_against_potential(load_deployed(result.model), potential) < 1e-9


def test_adapters_for_elements_the_model_lacks_or_other_architectures_are_errors():
    torch.manual_seed(0)
    model = build_model(dict(TINY), len(SPECIES))
    with pytest.raises(ConfigError, match="the model has no F, Si"):
        with_adapters(model, dict(TINY), SPECIES, ["H", "F", "Si"])
    adapted, hyperparameters = with_adapters(model, dict(TINY), SPECIES, ["H"])
    with pytest.raises(ConfigError, match="has adapters already"):
        with_adapters(adapted, hyperparameters, SPECIES, ["C"])
    schnet = {"architecture": "schnet", "cutoff": 4.0}
    with pytest.raises(ConfigError, match="schnet architecture has no per-element adapters"):
        with_adapters(build_model(schnet, len(SPECIES)), schnet, SPECIES, ["H"])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapters")
    ase.io.write(folder / "ethanol.xyz", ase.io.read(ETHANOL / "train.xyz", ":10"))
    torch.manual_seed(0)
    model = build_model(dict(TINY), len(SPECIES))
    record = provenance(ETHANOL / "LICENSE", "sevenn", "0.13.0", "test weights")
    foundation = imported_potential(model, dict(TINY), SPECIES, record, torch.float64)
    return {"foundation": save_model(foundation, folder / "found.mlff"),
            "ethanol": folder / "ethanol.xyz"}


def _config(files, finetune, **training):
    return validate_config({
        "seed": 3, "dtype": "float64", "threads": 1,
        "data": {"train": str(files["ethanol"]), "valid_fraction": 0.2, "cache_dir": None},
        "finetune": {"init_from": str(files["foundation"]), "lr_factor": 1.0, **finetune},
        "training": {"batch_size": 4, "max_epochs": 2, "lr": 0.02, "ema_decay": None,
                     **training},
    })


def test_element_local_fine_tuning_moves_only_the_adapted_elements(files, tmp_path):
    config = _config(files, {"adapters": ["H", "C", "O"],
                             "replay": {"structures": str(files["ethanol"]), "count": 4}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        result = train(config, tmp_path / "run", progress=False)
    before, after = load_model(files["foundation"]), load_model(result.model_path)
    assert after.hyperparameters["adapters"] == [0, 1, 3]
    old, new = before.state_dict(), after.state_dict()
    moved = {name for name in old if not torch.equal(old[name], new[name])}
    assert any(".adapters." in name for name in new if name not in old)
    # E0s are refitted to the data; the shared weights and copper's entries stay
    assert moved <= {"e0s", "model.embedding.weight", "model.scale_shift.scales",
                     "model.scale_shift.shifts"}
    copper = SPECIES.index(29)
    for name in ("model.scale_shift.scales", "model.scale_shift.shifts"):
        assert new[name][copper] == old[name][copper]
    assert any(not torch.equal(new[n], torch.zeros_like(new[n])) for n in new if ".adapters." in n)
    structure = _copper()
    forces = []
    for model in (before, after):
        structure.calc = MLFFCalculator(model)
        forces.append(structure.get_forces())
    assert (forces[0] == forces[1]).all()


def test_pointless_adapter_settings_are_refused(files):
    with pytest.raises(ConfigError, match="not element symbols"):
        _config(files, {"adapters": ["Hx"]})
    with pytest.raises(ConfigError, match="weight decay would still move them"):
        _config(files, {"adapters": ["H"]}, weight_decay=1e-4)
    with pytest.raises(ConfigError, match="adapters and finetune.multihead"):
        _config(files, {"adapters": ["H"], "multihead": True, "replay": {"count": 2}})


def test_a_frozen_adapter_is_an_error(files, tmp_path):
    config = _config(files, {"adapters": ["H"], "freeze": ["model.layers.0"]})
    with pytest.raises(ConfigError, match="an adapter of finetune.adapters"):
        train(config, tmp_path / "run", progress=False)
