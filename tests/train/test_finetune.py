"""Fine-tuning a saved model on new data (``finetune`` config section).

All data are labelled with ASE's EMT (H, C, N, O), so the pretraining set (the first
shipped ethanol geometries, relabelled) and the fine-tuning sets (rattled methanol, and
ethylamine with the new element N) come from one potential-energy surface, as a real
fine-tuning run needs: the shipped ethanol labels are DFT and no DFT code ships with ASE.
"""

import importlib
import json

import ase.io
import pytest
import torch
import yaml
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from mlff.data.dataset import GraphDataset
from mlff.errors import ConfigError, ModelFileError
from mlff.models.io import read_metadata
from mlff.train.checkpoint import load_checkpoint
from mlff.train.config import load_config, validate_config
from mlff.train.data import load_training_data
from mlff.train.finetune import potential_from_pretrained, resolve_config
from mlff.train.trainer import Trainer, evaluate, train
from mlff.uq.io import load_model

from .conftest import ETHANOL

MODEL = {"architecture": "painn", "cutoff": 4.0, "num_features": 8, "num_layers": 2,
         "num_radial": 6}
# energies matter as much as forces here: a single-molecule set has a narrow energy range
LOSS = {"energy_weight": 100.0, "forces_weight": 10.0}
H, C, N, O = 1, 6, 7, 8


def _emt(frames):
    labelled = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        labelled.append(atoms)
    return labelled


@pytest.fixture(scope="module")
def emt_sets(tmp_path_factory):
    """Paths of: ethanol (40 frames) and ethanol_test (30); methanol, ethylamine (24 rattled
    frames each) and their _test sets (12 each)."""
    folder = tmp_path_factory.mktemp("finetune_data")
    ethanol = ase.io.read(ETHANOL / "train.xyz", ":70")
    sets = {"ethanol": _emt(ethanol[:40]), "ethanol_test": _emt(ethanol[40:])}
    for name, formula in (("methanol", "CH3OH"), ("ethylamine", "CH3CH2NH2")):
        frames = []
        for k in range(36):
            atoms = molecule(formula)
            atoms.rattle(0.08, seed=k)
            frames.append(atoms)
        frames = _emt(frames)
        sets[name], sets[f"{name}_test"] = frames[:24], frames[24:]
    paths = {}
    for name, frames in sets.items():
        paths[name] = folder / f"{name}.xyz"
        ase.io.write(paths[name], frames)
    return paths


def _config(train_file, max_epochs=20, model=None, **finetune):
    config = {
        "seed": 1,
        "dtype": "float64",
        "data": {"train": str(train_file), "valid_fraction": 0.25, "cache_dir": None},
        "training": {"batch_size": 4, "max_epochs": max_epochs, "lr": 0.005, "loss": dict(LOSS)},
    }
    if model is not None:
        config["model"] = model
    if finetune:
        config["finetune"] = finetune
    return config


@pytest.fixture(scope="module")
def pretrained(emt_sets, tmp_path_factory):
    """A tiny PaiNN trained briefly on the EMT ethanol frames: its model file."""
    out = tmp_path_factory.mktemp("pretrained") / "run"
    config = _config(emt_sets["ethanol"], max_epochs=40, model=MODEL)
    return train(config, out, progress=False).model_path


def _errors(potential, path):
    metrics = evaluate(potential, GraphDataset.from_file(path, potential.cutoff), 32)
    return metrics["energy_mae_meV_per_atom"], metrics["forces_mae_meV_per_A"]


def test_finetune_learns_methanol_and_keeps_ethanol(emt_sets, pretrained, tmp_path):
    config = _config(emt_sets["methanol"], init_from=str(pretrained), lr_factor=0.3,
                     replay_data=str(emt_sets["ethanol"]), replay_fraction=0.5)
    result = train(config, tmp_path / "ft", progress=False)
    before, after = load_model(pretrained), load_model(result.model_path)

    # (a) better on the new molecule than the pretrained model
    new_before = _errors(before, emt_sets["methanol_test"])
    new_after = _errors(after, emt_sets["methanol_test"])
    assert new_after[0] < new_before[0] and new_after[1] < new_before[1], (new_before, new_after)
    # (b) the ethanol force error stays within 20 % of the pretrained model's (replay)
    old_before = _errors(before, emt_sets["ethanol_test"])
    old_after = _errors(after, emt_sets["ethanol_test"])
    assert old_after[1] <= 1.2 * old_before[1], (old_before, old_after)

    metadata = read_metadata(result.model_path)
    record = metadata["training"]["finetune"]
    assert record["init_from"] == str(pretrained)
    assert record["init_from_data_fingerprint"] == read_metadata(pretrained)["data_fingerprint"]
    assert len(record["init_from_sha256"]) == 64
    pretrained_data = read_metadata(pretrained)["data_fingerprint"]
    assert metadata["data_fingerprint"]["replay"] == pretrained_data["train"]
    assert metadata["training"]["num_train"] == 18 + 18  # new training structures + replay
    assert metadata["hyperparameters"] == read_metadata(pretrained)["hyperparameters"]
    assert metadata["species"] == [H, C, O]
    first = json.loads((tmp_path / "ft" / "log.jsonl").read_text().splitlines()[0])
    assert first["lr"] == pytest.approx(0.005 * 0.3)
    written = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())
    assert written["model"] == read_metadata(pretrained)["hyperparameters"]


def test_same_elements_start_from_the_exact_pretrained_model(emt_sets, pretrained, tmp_path):
    config = validate_config(_config(emt_sets["methanol"], init_from=str(pretrained)))
    start = potential_from_pretrained(config, load_training_data(config))
    old = load_model(pretrained)
    assert start.species == old.species
    for name, value in old.state_dict().items():
        assert torch.equal(start.state_dict()[name], value), name
    assert _errors(start, emt_sets["methanol_test"]) == _errors(old, emt_sets["methanol_test"])
    # no freezing: the optimizer gets every parameter; energies are not re-aligned
    trainer = Trainer(config, tmp_path / "t", progress=False)
    assert torch.equal(trainer.potential.shift, old.shift)
    optimized = sum(len(g["params"]) for g in trainer.optimizer.param_groups)
    assert optimized == len(list(old.parameters()))


def test_new_element_rows_e0s_and_freezing(emt_sets, pretrained, tmp_path):
    raw = _config(emt_sets["ethylamine"], init_from=str(pretrained), lr_factor=0.3,
                  freeze=["model.embedding", "model.messages.0"],
                  replay_data=str(emt_sets["ethanol"]), replay_fraction=0.5)
    config = validate_config(raw)
    old = load_model(pretrained)
    start = potential_from_pretrained(config, load_training_data(config))
    old_rows = [0, 1, 3]  # H, C, O among H, C, N, O (sorted by atomic number)
    assert old.species == [H, C, O] and start.species == [H, C, N, O]
    embedding = start.model.embedding.weight.detach().clone()
    assert torch.equal(embedding[old_rows], old.model.embedding.weight)
    assert torch.isfinite(embedding[2]).all() and embedding[2].abs().sum() > 0
    assert torch.equal(start.e0s[old_rows], old.e0s) and torch.isfinite(start.e0s[2])
    assert torch.equal(start.scale, old.scale) and torch.equal(start.shift, old.shift)
    for name, value in old.model.state_dict().items():
        if name != "embedding.weight":
            assert torch.equal(start.model.state_dict()[name], value), name
    again = potential_from_pretrained(config, load_training_data(config))
    assert torch.equal(again.model.embedding.weight, embedding)  # seeded
    assert torch.equal(again.e0s, start.e0s)

    frozen = {name for name, p in start.named_parameters() if not p.requires_grad}
    assert frozen and frozen == {name for name, _ in start.named_parameters()
                                 if name.startswith("model.messages.0.")}
    assert start.model.embedding.weight.requires_grad  # the N row trains, H C O rows do not
    trainer = Trainer(config, tmp_path / "t", progress=False)
    optimized = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    parameters = trainer.potential.named_parameters()
    assert {name for name, p in parameters if id(p) not in optimized} == frozen

    result = train(config, tmp_path / "ft", progress=False)
    final = load_model(result.model_path)
    assert torch.equal(final.model.embedding.weight[old_rows], old.model.embedding.weight)
    assert not torch.equal(final.model.embedding.weight[2], embedding[2])
    for name, value in old.model.messages[0].state_dict().items():
        assert torch.equal(final.model.messages[0].state_dict()[name], value), name
    readout = final.model.readout.state_dict()
    assert any(not torch.equal(readout[k], v) for k, v in old.model.readout.state_dict().items())
    # better on the new element's molecule than the pretrained model extended to N;
    # ethanol forces within 20 % of the pretrained model's
    new_start = _errors(start, emt_sets["ethylamine_test"])
    new_final = _errors(final, emt_sets["ethylamine_test"])
    assert new_final[1] < new_start[1], (new_start, new_final)
    old_before = _errors(old, emt_sets["ethanol_test"])
    old_after = _errors(final, emt_sets["ethanol_test"])
    assert old_after[1] <= 1.2 * old_before[1], (old_before, old_after)


def test_resume_of_a_finetuning_run_is_exact(emt_sets, pretrained, tmp_path):
    def config(epochs):
        return _config(emt_sets["ethylamine"], max_epochs=epochs, init_from=str(pretrained),
                       freeze=["model.embedding"])

    train(config(4), tmp_path / "a", progress=False)
    train(config(2), tmp_path / "b", progress=False)
    train(config(4), tmp_path / "b", resume=True, progress=False)
    a = load_checkpoint(tmp_path / "a" / "last.ckpt")["model"]
    b = load_checkpoint(tmp_path / "b" / "last.ckpt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_e0s_of_new_elements_from_a_mapping_and_refit_without_keep(emt_sets, pretrained):
    old = load_model(pretrained)
    raw = _config(emt_sets["ethylamine"], init_from=str(pretrained))
    raw["data"]["e0s"] = {"N": -3.0}  # only the new element is needed
    config = validate_config(raw)
    potential = potential_from_pretrained(config, load_training_data(config))
    assert potential.e0s.tolist() == [*old.e0s[:2].tolist(), -3.0, old.e0s[2].item()]

    raw = _config(emt_sets["ethylamine"], init_from=str(pretrained), keep_e0s=False)
    config = validate_config(raw)
    potential = potential_from_pretrained(config, load_training_data(config))
    assert potential.e0s[3] == old.e0s[2]  # O is not in the new data: kept
    assert potential.e0s[0] != old.e0s[0] and potential.e0s[1] != old.e0s[1]  # H, C refitted


def test_replay_adds_structures_drawn_with_the_seed(emt_sets, pretrained):
    base = _config(emt_sets["methanol"], init_from=str(pretrained))
    plain = load_training_data(validate_config(base))
    assert len(plain.train) == 18 and "replay" not in plain.fingerprints

    def with_replay(fraction):
        raw = _config(emt_sets["methanol"], init_from=str(pretrained),
                      replay_data=str(emt_sets["ethanol"]), replay_fraction=fraction)
        return load_training_data(validate_config(raw))

    data = with_replay(0.25)
    assert len(data.train) == 18 + 6  # round(0.25 / 0.75 * 18)
    assert data.valid.sources == plain.valid.sources  # validation: new data only
    replayed = data.train.sources[18:]
    assert all(str(emt_sets["ethanol"]) in s for s in replayed) and len(set(replayed)) == 6
    assert with_replay(0.25).train.sources == data.train.sources  # drawn with the seed
    replay = GraphDataset.from_file(emt_sets["ethanol"], 4.0)
    assert data.fingerprints["replay"] == replay.fingerprint
    names = data.train.config_types
    tags = [names[int(g["config_type"][0])] for g in data.train]
    assert tags == ["Default"] * 18 + ["Training_set"] * 6
    assert data.species == [H, C, O]
    # more replay than the file holds: every structure first, then again
    many = with_replay(0.8).train.sources[18:]
    assert len(many) == 72 and len(set(many)) == 40


def test_model_section_optional_or_matching(emt_sets, pretrained, tmp_path):
    hyperparameters = read_metadata(pretrained)["hyperparameters"]
    raw = _config(emt_sets["methanol"], init_from=str(pretrained))
    config = resolve_config(validate_config(raw))
    assert config.model.model_dump() == hyperparameters
    partial = {"architecture": "painn", "cutoff": 4.0, "num_layers": 2}
    config = resolve_config(validate_config(_config(emt_sets["methanol"], model=partial,
                                                    init_from=str(pretrained))))
    assert config.model.model_dump() == hyperparameters  # unspecified keys come from the model file
    mismatched = {**MODEL, "num_features": 16, "cutoff": 5.0}
    with pytest.raises(ConfigError) as info:
        train(_config(emt_sets["methanol"], model=mismatched, init_from=str(pretrained)),
              tmp_path / "run", progress=False)
    message = str(info.value)
    assert "model.num_features" in message and "model.cutoff" in message and "16" in message
    assert "model.num_layers" not in message
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="model.architecture"):
        raw = _config(emt_sets["methanol"], model={"architecture": "schnet"},
                      init_from=str(pretrained))
        resolve_config(validate_config(raw))


def test_a_finetuning_run_reads_the_pretrained_metadata_once(emt_sets, pretrained, tmp_path,
                                                             monkeypatch):
    finetune = importlib.import_module("mlff.train.finetune")  # mlff.train is a function
    reads = []

    def counting(path):
        reads.append(str(path))
        return read_metadata(path)

    monkeypatch.setattr(finetune, "read_metadata", counting)
    config = _config(emt_sets["methanol"], max_epochs=1, init_from=str(pretrained))
    result = train(config, tmp_path / "run", progress=False)
    assert reads == [str(pretrained)]
    assert read_metadata(result.model_path)["training"]["finetune"]["init_from"] == str(pretrained)
    resolved = resolve_config(validate_config(config))
    assert resolve_config(resolved) is resolved and len(reads) == 2


def test_freeze_prefix_that_matches_nothing(emt_sets, pretrained, tmp_path):
    for prefix in ("model.embeding", "model.message"):  # a prefix matches whole name parts
        config = _config(emt_sets["methanol"], init_from=str(pretrained), freeze=[prefix])
        with pytest.raises(ConfigError) as info:
            train(config, tmp_path / prefix, progress=False)
        message = str(info.value)
        assert f"'{prefix}'" in message
        assert "model.embedding" in message and "model.messages.0" in message


def test_frozen_grown_embedding_needs_no_weight_decay(emt_sets, pretrained):
    raw = _config(emt_sets["ethylamine"], init_from=str(pretrained), freeze=["model.embedding"])
    raw["training"]["weight_decay"] = 0.01
    config = validate_config(raw)
    with pytest.raises(ConfigError, match="weight_decay"):
        potential_from_pretrained(config, load_training_data(config))


def test_missing_model_file_and_config_errors(emt_sets, tmp_path):
    raw = _config(emt_sets["methanol"], init_from="nowhere/pretrained.mlff")
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    assert config.finetune.init_from == str(tmp_path / "nowhere" / "pretrained.mlff")
    with pytest.raises(ModelFileError, match="finetune.init_from.*no such model file"):
        train(config, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="missing required key 'model'"):
        validate_config(_config(emt_sets["methanol"]))
    with pytest.raises(ConfigError, match="replay_data"):
        validate_config(_config(emt_sets["methanol"], init_from="m.mlff", replay_fraction=0.3))
    with pytest.raises(ConfigError, match="finetune.frezze"):
        validate_config(_config(emt_sets["methanol"], init_from="m.mlff", frezze=[]))
