"""Fine-tuning an imported foundation model: species order, E0 refit, missing elements,
replay labelled by the model itself, and the guards against runs that do nothing.

The "foundation" here is a small SevenNet-architecture model written the way
`mlff import` writes SevenNet-0 (zero E0s, provenance of another code, species in the
original code's order, which is not by atomic number), so each test takes seconds; the
real SevenNet-0 is fine-tuned in benchmarks/foundation.py.
"""

import json
import warnings

import ase.io
import pytest
import torch

from mlff.calculators import MLFFCalculator
from mlff.data import keys as K
from mlff.data.dataset import BatchLoader
from mlff.data.graph import to_device
from mlff.errors import ConfigError, DataError, DataWarning
from mlff.imports.common import imported_potential, provenance
from mlff.models.io import read_metadata, save_model
from mlff.models.registry import build_model
from mlff.train.config import REPLAY_CONFIG_TYPE, validate_config
from mlff.train.data import load_training_data
from mlff.train.finetune import potential_from_pretrained
from mlff.train.guards import ZeroLossError
from mlff.train.loss import compute_loss
from mlff.train.pretrained import energy_offset
from mlff.train.trainer import Trainer, train
from mlff.uq.io import load_model

from .conftest import ETHANOL

TINY = {"architecture": "sevennet", "cutoff": 4.0, "num_layers": 1, "num_features": 4,
        "l_max": 1, "num_radial": 4, "radial_mlp": [8], "avg_num_neighbors": 6.0}


def _foundation(path, species):
    torch.manual_seed(0)
    model = build_model(dict(TINY), len(species))
    record = provenance(ETHANOL / "LICENSE", "sevenn", "0.13.0", "test weights")
    potential = imported_potential(model, dict(TINY), species, record, torch.float64)
    save_model(potential, path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("foundation")
    ase.io.write(folder / "ethanol.xyz", ase.io.read(ETHANOL / "train.xyz", ":10"))
    return {
        # O, H, Cu, C: the original code's order, not by atomic number
        "foundation": _foundation(folder / "found.mlff", [8, 1, 29, 6]),
        "no_oxygen": _foundation(folder / "no_o.mlff", [1, 6, 29]),
        "ethanol": folder / "ethanol.xyz",
    }


def _config(files, finetune=None, **training):
    return validate_config({
        "seed": 3, "dtype": "float64", "threads": 1,
        "data": {"train": str(files["ethanol"]), "valid_fraction": 0.2, "cache_dir": None},
        "finetune": {"init_from": str(files["foundation"]), **(finetune or {})},
        "training": {"batch_size": 4, "max_epochs": 1, "lr": 0.01, "ema_decay": None,
                     **training},
    })


def _predict(potential, dataset):
    batch = next(BatchLoader(dataset, 64, shuffle=False).batches())
    batch = to_device(batch, potential.device, potential.dtype)
    out = potential(batch, compute_forces=True)
    return out[K.ENERGY].detach(), out[K.FORCES].detach()


def test_imported_model_keeps_its_species_order(files):
    config = _config(files, {"keep_e0s": True})
    data = load_training_data(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # the DFT energies' offset, kept here
        potential = potential_from_pretrained(config, data)
    original = load_model(files["foundation"])
    assert potential.species == [8, 1, 29, 6]
    energy, forces = _predict(potential, data.train)
    energy0, forces0 = _predict(original, data.train)
    torch.testing.assert_close(energy, energy0, rtol=0, atol=1e-10)
    torch.testing.assert_close(forces, forces0, rtol=0, atol=1e-10)


def test_offset_reference_energies_are_refitted_not_inherited(files):
    data = load_training_data(_config(files))
    original = load_model(files["foundation"])
    assert abs(energy_offset(original, data.train)) > 100  # ORCA all-electron vs. ~0
    with pytest.warns(DataWarning, match="refitting the E0s of H, C, O"):
        potential = potential_from_pretrained(_config(files), data)
    assert abs(energy_offset(potential, data.train)) < 1e-6
    assert float(potential.e0s[potential.species.index(29)]) == 0.0  # Cu: not in the data
    # keep_e0s: true inherits them, but says so
    with pytest.warns(DataWarning, match="keep_e0s: true keeps the pretrained E0s"):
        kept = potential_from_pretrained(_config(files, {"keep_e0s": True}), data)
    assert kept.e0s.abs().max() == 0


def test_elements_the_foundation_lacks_are_named(files):
    config = _config(files)
    config.finetune.init_from = str(files["no_oxygen"])
    data = load_training_data(config)
    with pytest.raises(DataError, match=r"hold O, which the pretrained model .*sevenn"):
        potential_from_pretrained(config, data)


def test_replay_is_labelled_by_the_starting_model(files, tmp_path):
    config = _config(files, {"replay": {"count": 6, "rattle": 0.1, "strain": 0.03}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        trainer = Trainer(config, tmp_path, progress=False)
    train = trainer.data.train
    tag = train.config_types.index(REPLAY_CONFIG_TYPE)
    replay = [i for i, g in enumerate(train) if int(g[K.CONFIG_TYPE][0]) == tag]
    assert len(replay) == 6 and len(train) == 8 + 6
    subset = train.subset(replay)
    energy, forces = _predict(trainer.potential, subset)
    batch = next(BatchLoader(subset, 64, shuffle=False).batches())
    torch.testing.assert_close(energy, batch[K.ENERGY], rtol=0, atol=1e-8)
    torch.testing.assert_close(forces, batch[K.FORCES], rtol=0, atol=1e-8)
    # rattled and strained copies, not the training structures themselves
    originals = {tuple(g[K.POSITIONS].flatten().tolist()) for g in train.subset(range(8))}
    assert all(tuple(g[K.POSITIONS].flatten().tolist()) not in originals for g in subset)
    assert trainer.data.fingerprints["pseudo_replay"] == "train"


def _replay_gradient(files, tmp_path, weight):
    """The gradient of the loss on a batch of the replay structures, after moving the
    model off the pretrained weights, with replay weight ``weight``."""
    config = _config(files, {"replay": {"count": 4, "weight": weight}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        trainer = Trainer(config, tmp_path / f"w{weight}", progress=False)
    with torch.no_grad():
        for parameter in trainer.potential.parameters():
            generator = torch.Generator().manual_seed(parameter.numel())
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator,
                                              dtype=parameter.dtype))
    train = trainer.data.train
    batch = next(BatchLoader(train.subset(range(len(train) - 4, len(train))), 4,
                             shuffle=False).batches())
    from mlff.train.loss import reweight

    batch = reweight(to_device(batch, trainer.device, trainer.dtype), trainer.train_factors)
    trainer.potential.zero_grad()
    pred = trainer.potential(batch, compute_forces=True, create_graph=True)
    loss, _ = compute_loss(pred, batch, trainer.loss_config)
    loss.backward()
    return float(loss), torch.cat([p.grad.flatten() for p in trainer.potential.parameters()
                                   if p.grad is not None])


def test_replay_weight_scales_its_loss_and_gradient(files, tmp_path):
    loss1, grad1 = _replay_gradient(files, tmp_path, 1.0)
    loss5, grad5 = _replay_gradient(files, tmp_path, 5.0)
    assert loss1 > 1e-8 and grad1.abs().max() > 1e-8  # away from the start, replay pulls back
    assert loss5 == pytest.approx(5 * loss1, rel=1e-9)
    torch.testing.assert_close(grad5, 5 * grad1)


def test_finetuned_model_saves_loads_and_runs_in_ase(files, tmp_path):
    config = _config(files, {"replay": {"count": 4}, "freeze": ["model.embedding"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        result = train(config, tmp_path / "run", progress=False)
    metadata = read_metadata(result.model_path)
    record = metadata["training"]["finetune"]
    assert record["replay"]["count"] == 4 and record["keep_e0s"] == "auto"
    assert metadata["species"] == [8, 1, 29, 6]
    model = load_model(result.model_path)
    atoms = ase.io.read(files["ethanol"], 0)
    reference = atoms.get_potential_energy()
    atoms.calc = MLFFCalculator(model)
    # refitted E0s: the fine-tuned model predicts energies on the data's scale
    assert abs(atoms.get_potential_energy() - reference) / len(atoms) < 0.5
    assert atoms.get_forces().shape == (9, 3)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["train"]["loss"] > 0


def test_a_replay_weight_of_zero_is_refused(files):
    with pytest.raises(ConfigError, match="replay.weight is 0"):
        _config(files, {"replay": {"weight": 0}})


def test_replay_data_without_a_fraction_is_refused(files):
    with pytest.raises(ConfigError, match="replay_fraction is 0"):
        _config(files, {"replay_data": str(files["ethanol"])})


def test_the_replay_config_type_is_not_weighted_twice(files):
    raw = {"data": {"train": "x.xyz", "config_type_weights": {REPLAY_CONFIG_TYPE: 2.0}},
           "finetune": {"init_from": "m.mlff", "replay": {}}}
    with pytest.raises(ConfigError, match="finetune.replay.weight instead"):
        validate_config(raw)


def test_freezing_everything_is_refused(files, tmp_path):
    config = _config(files, {"freeze": ["model"], "keep_e0s": False})
    with pytest.raises(ConfigError, match="freezes every parameter"):
        Trainer(config, tmp_path, progress=False)


def test_a_loss_that_reads_zero_is_an_error(files, tmp_path):
    raw = _config(files, {"keep_e0s": False}).model_dump()
    raw["data"]["config_type_weights"] = {"Training_set": 0.0}  # every structure weighs 0
    with pytest.raises(ZeroLossError, match="exactly 0 in epoch 1"):
        train(validate_config(raw), tmp_path / "run", progress=False)


def test_all_loss_weights_zero_is_refused(files, tmp_path):
    config = _config(files, {"keep_e0s": False},
                     loss={"energy_weight": 0, "forces_weight": 0, "stress_weight": 0})
    with pytest.raises(ConfigError, match="all 0"):
        Trainer(config, tmp_path, progress=False)


def test_replay_structures_of_unknown_elements_are_named(files, tmp_path):
    from ase.build import bulk

    ase.io.write(tmp_path / "gold.xyz", bulk("Au", "fcc", a=4.08))
    config = _config(files, {"replay": {"structures": str(tmp_path / "gold.xyz")}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        with pytest.raises(DataError, match="holds Au, which the model does not know"):
            Trainer(config, tmp_path / "run", progress=False)


def test_replay_of_a_structure_file_is_rattled_and_strained(files, tmp_path):
    from ase.build import bulk

    cell = bulk("Cu", "fcc", a=3.6, cubic=True)
    ase.io.write(tmp_path / "cu.xyz", cell)
    config = _config(files, {"replay": {"structures": str(tmp_path / "cu.xyz"), "count": 3,
                                        "weight": 2.0}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        trainer = Trainer(config, tmp_path / "run", progress=False)
    replay = [g for g in trainer.data.train if int(g[K.NUM_ATOMS][0]) == 4]
    assert len(replay) == 3
    volumes = {round(abs(float(torch.det(g[K.CELL][0]))), 6) for g in replay}
    assert len(volumes) == 3 and all(v != round(cell.get_volume(), 6) for v in volumes)
    factors = trainer.train_factors[trainer.data.train.config_types.index(REPLAY_CONFIG_TYPE)]
    assert float(factors) == 2.0


def test_a_committee_is_fine_tuned_from_an_imported_model(files, tmp_path):
    """What `mlff learn` trains from `train.finetune.init_from`: K members fine-tuned from
    the same foundation with their own seeds (data order) and bootstrap resamples."""
    from mlff.train.committee import train_committee
    from mlff.uq.io import load_model as load_committee

    raw = _config(files, {"replay": {"count": 4}}).model_dump()
    raw["committee"] = {"size": 2, "bootstrap": True, "processes": 1, "calibration": "scale"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        result = train_committee(validate_config(raw), tmp_path / "c", progress=False)
    committee = load_committee(result.model_path)
    assert committee.size == 2 and committee.species == [8, 1, 29, 6]
    first, second = (dict(m.named_parameters()) for m in committee.members)
    assert any(not torch.equal(first[k], second[k]) for k in first)  # not one model twice
    for path in result.member_paths:
        record = read_metadata(path)["training"]["finetune"]
        assert record["init_from"] == str(files["foundation"])
    atoms = ase.io.read(files["ethanol"], 0)
    atoms.calc = MLFFCalculator(result.model_path)
    atoms.get_forces()
    assert atoms.calc.results["forces_std"].max() > 0  # the members disagree
    assert result.calibration["valid"]["num_structures"] == 2


def test_a_committee_can_vary_its_fine_tuning_recipe(files, tmp_path):
    """committee.members: every other member fine-tuned with replay, as the foundation
    benchmark's recipe-diverse committee (and `mlff learn` with it in its train section)."""
    from mlff.train.committee import train_committee

    raw = _config(files).model_dump()
    raw["committee"] = {"size": 2, "processes": 1, "calibration": "scale",
                        "members": [{}, {"finetune": {"replay": {"count": 4}}}]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        result = train_committee(validate_config(raw), tmp_path / "c", progress=False)
    replay = [read_metadata(p)["training"]["finetune"]["replay"] for p in result.member_paths]
    assert replay[0] is None and replay[1]["count"] == 4
    assert load_model(result.model_path).size == 2


def _multihead_trainer(files, tmp_path, **finetune):
    config = _config(files, {"replay": {"count": 4}, "multihead": True, **finetune})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return Trainer(config, tmp_path, progress=False)


def test_the_foundation_head_starts_as_the_foundation(files, tmp_path):
    from mlff.models.heads import head_names, select_head

    trainer = _multihead_trainer(files, tmp_path)
    potential = trainer.potential
    assert head_names(potential) == ["main", "foundation"]
    original = load_model(files["foundation"])
    data = trainer.data.train
    energy0, forces0 = _predict(original, data)
    energy, forces = _predict(select_head(potential, "foundation"), data)
    torch.testing.assert_close(forces, forces0, rtol=0, atol=1e-10)
    # energies on the refitted E0s: the foundation's plus the E0 change of each atom
    batch = next(BatchLoader(data, 64, shuffle=False).batches())
    change = (potential.e0s - original.e0s)[potential.species_table[batch[K.ATOMIC_NUMBERS]]]
    per_structure = torch.zeros_like(energy0).index_add_(0, batch[K.BATCH], change)
    torch.testing.assert_close(energy, energy0 + per_structure, rtol=0, atol=1e-8)
    main_energy, main_forces = _predict(select_head(potential, "main"), data)
    torch.testing.assert_close(main_forces, forces, rtol=0, atol=0)


def _head_gradients(trainer, replay: bool) -> dict[str, float]:
    """Largest gradient of each head's readout on the replay or the training structures."""
    from mlff.train.loss import reweight

    with torch.no_grad():  # away from the start, so that the replay loss is not 0
        for parameter in trainer.potential.parameters():
            generator = torch.Generator().manual_seed(parameter.numel())
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator,
                                              dtype=parameter.dtype))
    train = trainer.data.train
    tag = train.config_types.index(REPLAY_CONFIG_TYPE)
    chosen = [i for i, g in enumerate(train) if (int(g[K.CONFIG_TYPE][0]) == tag) == replay]
    batch = next(BatchLoader(train.subset(chosen), 64, shuffle=False).batches())
    batch = reweight(to_device(batch, trainer.device, trainer.dtype), trainer.train_factors)
    batch[K.HEAD] = trainer.run.head_of_type[batch[K.CONFIG_TYPE]]
    trainer.potential.zero_grad()
    pred = trainer.potential(batch, compute_forces=True, create_graph=True)
    compute_loss(pred, batch, trainer.loss_config)[0].backward()
    grads = {"main": 0.0, "foundation": 0.0, "shared": 0.0}
    for name, parameter in trainer.potential.named_parameters():
        part = ("foundation" if name.startswith("model.extra_heads.foundation.") else
                "main" if name.startswith(("model.readout", "model.scale_shift")) else "shared")
        if parameter.grad is not None:
            grads[part] = max(grads[part], float(parameter.grad.abs().max()))
    return grads


def test_replay_trains_the_foundation_head_and_the_data_the_main_head(files, tmp_path):
    replay = _head_gradients(_multihead_trainer(files, tmp_path / "a"), replay=True)
    assert replay["main"] == 0 and replay["foundation"] > 1e-8 and replay["shared"] > 1e-8
    own = _head_gradients(_multihead_trainer(files, tmp_path / "b"), replay=False)
    assert own["foundation"] == 0 and own["main"] > 1e-8 and own["shared"] > 1e-8


def test_a_multihead_model_trains_saves_and_evaluates_either_head(files, tmp_path):
    config = _config(files, {"replay": {"count": 4}, "multihead": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        result = train(config, tmp_path / "run", progress=False)
    metadata = read_metadata(result.model_path)
    assert metadata["hyperparameters"]["heads"] == ["main", "foundation"]
    assert metadata["training"]["finetune"]["multihead"] is True
    energies = {}
    for head in (None, "main", "foundation"):
        atoms = ase.io.read(files["ethanol"], 0)
        atoms.calc = MLFFCalculator(result.model_path, head=head)
        energies[head] = atoms.get_potential_energy()
    assert energies[None] == energies["main"] != energies["foundation"]


def test_multihead_without_replay_is_refused(files):
    with pytest.raises(ConfigError, match="multihead is true but finetune.replay is not given"):
        _config(files, {"multihead": True})


def test_the_foundation_head_can_be_frozen(files, tmp_path):
    trainer = _multihead_trainer(files, tmp_path,
                                 freeze=["model.extra_heads.foundation"])
    frozen = [name for name, p in trainer.potential.named_parameters() if not p.requires_grad]
    assert frozen and all(name.startswith("model.extra_heads.foundation.") for name in frozen)
    with pytest.raises(ConfigError, match="'model.extra_heads' matches no parameter"):
        Trainer(_config(files, {"freeze": ["model.extra_heads"]}), tmp_path / "b",
                progress=False)
