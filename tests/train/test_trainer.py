import json

import pytest
import torch

import mlff
from mlff.errors import ConfigError, DataError
from mlff.train.checkpoint import load_checkpoint
from mlff.train.trainer import train

from .conftest import small_config


def _weights(path):
    return load_checkpoint(path)["model"]


def test_training_writes_outputs_and_learns(tmp_path, ethanol_small):
    config = small_config(ethanol_small, max_epochs=6)
    config["data"]["test"] = str(ethanol_small)
    result = train(config, out_dir=tmp_path / "run", progress=False)
    out = tmp_path / "run"
    for name in ("model.mlff", "best.ckpt", "last.ckpt", "config.yaml", "log.jsonl", "metrics.json"):
        assert (out / name).is_file(), name
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == list(range(1, 7))
    assert lines[-1]["valid"]["forces_mae_meV_per_A"] < lines[0]["valid"]["forces_mae_meV_per_A"]
    assert result.test_metrics["forces_mae_meV_per_A"] > 0
    model = mlff.load_model(result.model_path)
    assert model.metadata["test_metrics"]["forces_mae_meV_per_A"] == pytest.approx(result.test_metrics["forces_mae_meV_per_A"])
    assert len(model.metadata["data_fingerprint"]["train"]) == 64


def test_resume_reaches_identical_weights(tmp_path, ethanol_small):
    straight = train(small_config(ethanol_small, max_epochs=4), out_dir=tmp_path / "a", progress=False)
    train(small_config(ethanol_small, max_epochs=2), out_dir=tmp_path / "b", progress=False)
    resumed = train(small_config(ethanol_small, max_epochs=4), out_dir=tmp_path / "b", resume=True,
                    progress=False)
    assert resumed.epochs == straight.epochs == 4
    a, b = _weights(tmp_path / "a" / "last.ckpt"), _weights(tmp_path / "b" / "last.ckpt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in log] == [1, 2, 3, 4]


def test_existing_run_needs_resume_and_same_config(tmp_path, ethanol_small):
    train(small_config(ethanol_small, max_epochs=1), out_dir=tmp_path / "r", progress=False)
    with pytest.raises(ConfigError, match="resume=True"):
        train(small_config(ethanol_small, max_epochs=2), out_dir=tmp_path / "r", progress=False)
    changed = small_config(ethanol_small, max_epochs=2, lr=0.1)
    with pytest.raises(ConfigError, match="training.lr"):
        train(changed, out_dir=tmp_path / "r", resume=True, progress=False)


def test_early_stopping_and_time_budget(tmp_path, ethanol_small):
    stopped = train(small_config(ethanol_small, max_epochs=50, lr=1e-12, early_stopping_patience=2,
                                 scheduler={"min_lr": 0.0}),
                    out_dir=tmp_path / "es", progress=False)
    assert stopped.stop_reason == "early_stopping" and stopped.epochs < 50
    budget = train(small_config(ethanol_small, max_epochs=10_000, max_minutes=0.05),
                   out_dir=tmp_path / "tb", progress=False)
    assert budget.stop_reason == "time_budget" and budget.epochs < 10_000


def test_stress_training_on_periodic_data(tmp_path, cu_emt):
    config = small_config(cu_emt, max_epochs=3)
    config["training"]["loss"] = {"energy_weight": 1.0, "forces_weight": 10.0, "stress_weight": 100.0}
    result = train(config, out_dir=tmp_path / "cu", progress=False)
    assert "stress_mae_meV_per_A3" in result.valid_metrics


def test_schedules_and_optimizers_run(tmp_path, ethanol_small):
    for k, training in enumerate([
        {"optimizer": "adamw", "weight_decay": 1e-4, "scheduler": {"name": "cosine", "warmup_epochs": 1}},
        {"ema_decay": None, "grad_clip": None, "scheduler": {"name": "constant"}},
    ]):
        result = train(small_config(ethanol_small, max_epochs=2, **training), out_dir=tmp_path / str(k),
                       progress=False)
        assert result.epochs == 2


def test_missing_forces_label_is_a_data_error(tmp_path, ethanol_small):
    config = small_config(ethanol_small)
    config["data"]["keys"] = {"forces": "REF_forces"}
    with pytest.raises(DataError) as info:
        train(config, out_dir=tmp_path / "x", progress=False)
    assert "REF_forces" in str(info.value) and str(ethanol_small) in str(info.value)
    assert ":0" in str(info.value)


def test_e0s_from_dict_and_file(tmp_path, ethanol_small):
    from .conftest import ETHANOL

    config = small_config(ethanol_small, max_epochs=1)
    config["data"]["e0s"] = str(ETHANOL / "isolated_atoms.xyz")
    model = mlff.load_model(train(config, out_dir=tmp_path / "f", progress=False).model_path)
    assert model.e0s.tolist()[0] == pytest.approx(-13.568422383046626)  # H first
    config["data"]["e0s"] = {"H": -1.0, "C": -2.0}
    with pytest.raises(DataError, match="no isolated-atom energy for O"):
        train(config, out_dir=tmp_path / "d", progress=False)


def test_element_missing_from_training_set_is_named(tmp_path, ethanol_small):
    import ase.io
    from ase.build import molecule

    from mlff.errors import UnknownElementError

    test_file = tmp_path / "with_n.xyz"
    frames = ase.io.read(ethanol_small, ":2")
    ammonia = molecule("NH3")
    ammonia.calc = frames[0].calc.__class__(ammonia, energy=-1.0, forces=ammonia.positions * 0)
    ase.io.write(test_file, frames + [ammonia])
    config = small_config(ethanol_small, max_epochs=1)
    config["data"]["test"] = str(test_file)
    with pytest.raises(UnknownElementError) as info:
        train(config, out_dir=tmp_path / "n", progress=False)
    assert f"{test_file}:2" in str(info.value) and "N" in str(info.value)


def test_test_indices_select_the_test_set(tmp_path, ethanol_small):
    (tmp_path / "train.txt").write_text("\n".join(map(str, range(0, 16))))
    (tmp_path / "valid.txt").write_text("\n".join(map(str, range(16, 20))))
    (tmp_path / "test.txt").write_text("\n".join(map(str, range(20, 24))))
    config = small_config(ethanol_small, max_epochs=1)
    config["data"].update(train_indices=str(tmp_path / "train.txt"),
                          valid_indices=str(tmp_path / "valid.txt"),
                          test_indices=str(tmp_path / "test.txt"))
    result = train(config, out_dir=tmp_path / "run", progress=False)
    assert result.test_metrics["num_energy"] == 4
    config["data"]["test"] = str(ethanol_small)
    with pytest.raises(ConfigError, match="not both"):
        train(config, out_dir=tmp_path / "run2", progress=False)
