import pytest
import yaml

from mlff.errors import ConfigError
from mlff.train.config import load_config, validate_config

from .conftest import small_config


def test_valid_config_fills_defaults(ethanol_small):
    config = validate_config(small_config(ethanol_small))
    assert config.training.loss.forces_weight == 100.0
    assert config.model.num_features == 8
    assert config.model.radial_basis == "bessel"  # from the PaiNN schema


def test_unknown_key_names_it_and_the_allowed_ones(ethanol_small):
    raw = small_config(ethanol_small)
    raw["training"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError) as info:
        validate_config(raw, "my.yaml")
    message = str(info.value)
    assert "my.yaml" in message and "training.learning_rate" in message
    assert "lr" in message and "batch_size" in message


def test_unknown_model_key_names_architecture_keys(ethanol_small):
    raw = small_config(ethanol_small)
    raw["model"]["num_feature"] = 8
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert "model.num_feature" in str(info.value)
    assert "num_features" in str(info.value)


def test_unknown_architecture_lists_known(ethanol_small):
    raw = small_config(ethanol_small)
    raw["model"]["architecture"] = "transformer9000"
    with pytest.raises(ConfigError) as info:
        validate_config(raw)
    assert "transformer9000" in str(info.value) and "painn" in str(info.value)


def test_bad_value_and_missing_key(ethanol_small):
    raw = small_config(ethanol_small)
    raw["training"]["lr"] = -1
    with pytest.raises(ConfigError, match="training.lr"):
        validate_config(raw)
    del raw["data"]
    with pytest.raises(ConfigError, match="missing required key 'data'"):
        validate_config(raw)


def test_yaml_file_paths_resolved_and_overrides(tmp_path, ethanol_small):
    raw = small_config(ethanol_small)
    raw["data"]["train"] = "relative.xyz"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path, overrides=["training.max_minutes=2.5", "seed=7"])
    assert config.data.train == str(tmp_path / "relative.xyz")
    assert config.training.max_minutes == 2.5 and config.seed == 7
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(path, overrides=["training.lr"])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_the_model_section_is_the_architectures_typed_config(ethanol_small):
    from mlff.models.painn import PaiNN

    config = validate_config(small_config(ethanol_small))
    assert isinstance(config.model, PaiNN.Config) and config.model.num_layers == 2
    assert config.model_dump()["model"]["num_features"] == 8  # the file form: a dict
    raw = small_config(ethanol_small)
    raw["model"]["num_layers"] = 0
    with pytest.raises(ConfigError, match="model.num_layers"):
        validate_config(raw)
    del raw["model"]["architecture"]
    with pytest.raises(ConfigError, match="model.architecture is required"):
        validate_config(raw)


def test_the_resolved_config_is_frozen(ethanol_small):
    from pydantic import ValidationError

    from mlff.train.finetune import resolve_config

    config = validate_config(small_config(ethanol_small))
    resolved = resolve_config(config)
    assert resolved.model_dump() == config.model_dump()
    # frozen sections equal the loaded ones, both ways round
    assert resolved.training == config.training and config.model == resolved.model
    assert resolve_config(resolved) is resolved
    for section, key, value in ((resolved, "seed", 2), (resolved.training, "lr", 0.1),
                                (resolved.training.loss, "forces_weight", 1.0),
                                (resolved.data, "train", "other.xyz"),
                                (resolved.model, "num_features", 4)):
        with pytest.raises(ValidationError, match="frozen"):
            setattr(section, key, value)
    config.seed = 2  # the loaded config stays the user's to change
    assert resolved.seed == 1


def test_a_run_resolves_its_config_once(ethanol_small, tmp_path, monkeypatch):
    import importlib

    from mlff.train.trainer import train

    finetune = importlib.import_module("mlff.train.finetune")
    calls = []
    resolve = finetune._resolve

    def counting(config):
        calls.append(config)
        return resolve(config)

    monkeypatch.setattr(finetune, "_resolve", counting)
    train(small_config(ethanol_small, max_epochs=1), tmp_path / "run", progress=False)
    assert len(calls) == 1
