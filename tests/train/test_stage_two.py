"""Stage two (MACE's second stage, optionally SWA): new loss weights and LR late in training."""

import json

import pytest
import torch

import mlff
from mlff.train.checkpoint import load_checkpoint, save_checkpoint
from mlff.train.config import validate_config
from mlff.train.data import required_labels
from mlff.train.trainer import Trainer, train

from .conftest import small_config


def _log(path):
    return [json.loads(line) for line in (path / "log.jsonl").read_text().splitlines()]


def test_stage_two_switches_loss_weights_and_lr(tmp_path, ethanol_small):
    config = small_config(ethanol_small, max_epochs=4,
                          stage_two={"start_fraction": 0.5, "lr": 0.0007})
    result = train(config, out_dir=tmp_path / "run", progress=False)
    log = _log(tmp_path / "run")
    assert [line["stage"] for line in log] == [1, 1, 2, 2]
    assert [line["lr"] for line in log][2:] == [0.0007, 0.0007]
    assert log[0]["lr"] == 0.005
    # the loss uses the weights of the stage: energy 1 then 1000, forces 100 in both
    for line, energy_weight in zip(log, [1.0, 1.0, 1000.0, 1000.0], strict=True):
        parts = line["train"]
        expected = energy_weight * parts["energy"] + 100 * parts["forces"]
        assert parts["loss"] == pytest.approx(expected)
    # best tracking restarted: the first stage-two epoch is always an improvement, and the
    # saved model comes from stage two
    assert log[2]["best"]
    assert result.best_epoch >= 3
    model = mlff.load_model(result.model_path)
    assert model.metadata["training"]["stage_two_start_epoch"] == 3
    best = load_checkpoint(tmp_path / "run" / "best.ckpt")
    assert best["epoch"] >= 3


def test_stage_two_default_lr_is_a_tenth(tmp_path, ethanol_small):
    config = small_config(ethanol_small, max_epochs=2, stage_two={"start_fraction": 0.5},
                          scheduler={"name": "cosine", "warmup_epochs": 1})
    train(config, out_dir=tmp_path / "run", progress=False)
    log = _log(tmp_path / "run")
    assert log[1]["stage"] == 2 and log[1]["lr"] == pytest.approx(0.0005)


@pytest.mark.parametrize("interrupt_after", [2, 4])
def test_resume_in_stage_two_reaches_identical_weights(tmp_path, ethanol_small, monkeypatch,
                                                       interrupt_after):
    stage_two = {"start_fraction": 0.5, "swa": True, "lr": 0.002}
    straight = train(small_config(ethanol_small, max_epochs=6, stage_two=stage_two),
                     out_dir=tmp_path / "a", progress=False)

    original = Trainer.train_epoch

    def killed(self):
        if self.epoch == interrupt_after:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        train(small_config(ethanol_small, max_epochs=6, stage_two=stage_two),
              out_dir=tmp_path / "b", progress=False)
    monkeypatch.setattr(Trainer, "train_epoch", original)
    resumed = train(small_config(ethanol_small, max_epochs=6, stage_two=stage_two),
                    out_dir=tmp_path / "b", resume=True, progress=False)
    assert resumed.epochs == straight.epochs == 6
    a, b = (load_checkpoint(tmp_path / name / "last.ckpt") for name in ("a", "b"))
    assert a["stage_two_epoch"] == b["stage_two_epoch"] == 3
    for part in ("model", "swa", "ema"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    assert a["schedule"] == b["schedule"]
    ma, mb = mlff.load_model(straight.model_path), mlff.load_model(resumed.model_path)
    for (key, x), y in zip(ma.state_dict().items(), mb.state_dict().values(), strict=True):
        assert torch.equal(x, y), key
    assert [line["stage"] for line in _log(tmp_path / "b")] == [1, 1, 1, 2, 2, 2]


def test_swa_model_is_the_average_of_the_stage_two_weights(tmp_path, ethanol_small, monkeypatch):
    weights = []
    original = Trainer.train_epoch

    def record(self):
        parts = original(self)
        if self.stage_two_epoch is not None:
            weights.append({k: v.clone() for k, v in self.potential.state_dict().items()})
        return parts

    monkeypatch.setattr(Trainer, "train_epoch", record)
    config = small_config(ethanol_small, max_epochs=4, lr=0.01,
                          stage_two={"start_fraction": 0.5, "swa": True, "lr": 0.01})
    train(config, out_dir=tmp_path / "run", progress=False)
    swa = load_checkpoint(tmp_path / "run" / "last.ckpt")["swa"]
    assert int(swa["n_averaged"]) == len(weights) == 2
    name = next(k for k, v in weights[0].items()
                if k.startswith("model.") and v.is_floating_point())
    torch.testing.assert_close(swa[f"module.{name}"], (weights[0][name] + weights[1][name]) / 2)


def test_early_stopping_in_stage_one_starts_stage_two(tmp_path, ethanol_small):
    config = small_config(ethanol_small, max_epochs=50, lr=1e-12, early_stopping_patience=2,
                          scheduler={"min_lr": 0.0},
                          stage_two={"start_fraction": 0.9, "lr": 1e-12})
    result = train(config, out_dir=tmp_path / "es", progress=False)
    assert result.stop_reason == "early_stopping"
    assert [line["stage"] for line in _log(tmp_path / "es")] == [1, 1, 1, 2, 2, 2]


def test_stage_two_starts_at_a_fraction_of_the_time_budget(tmp_path, ethanol_small):
    config = validate_config(small_config(ethanol_small, max_epochs=100, max_minutes=1.0,
                                          stage_two={"start_fraction": 0.5}))
    trainer = Trainer(config, tmp_path, progress=False)
    assert trainer._stage_two_due(60.0) is None
    trainer.elapsed = 30.0
    assert trainer._stage_two_due(60.0) == "0.5 of max_minutes"
    trainer.elapsed, trainer.epoch = 0.0, 50
    assert trainer._stage_two_due(60.0) == "0.5 of max_epochs"


def test_stage_two_loss_and_required_labels(ethanol_small):
    config = validate_config(small_config(
        ethanol_small, loss={"energy_weight": 0.0, "forces_weight": 10.0, "stress_weight": 0.0},
        stage_two={"energy_weight": 5.0, "forces_weight": 1.0}))
    loss = config.training.stage_two_loss()
    assert (loss.energy_weight, loss.forces_weight, loss.stress_weight) == (5.0, 1.0, 0.0)
    assert required_labels(config) == ("energy", "forces")  # energy is needed by stage two
    with_stress = validate_config(small_config(ethanol_small, stage_two={"stress_weight": 1.0}))
    assert "stress" in required_labels(with_stress)
    assert validate_config(small_config(ethanol_small)).training.stage_two is None


def test_resume_from_a_checkpoint_without_stage_two_keys(tmp_path, ethanol_small):
    """Checkpoints written before stage two existed still resume (stage one)."""
    train(small_config(ethanol_small, max_epochs=1), out_dir=tmp_path / "r", progress=False)
    last = tmp_path / "r" / "last.ckpt"
    state = load_checkpoint(last)
    for key in ("stage_two_epoch", "swa", "hyperparameters"):
        del state[key]
    del state["config"]["training"]["stage_two"], state["config"]["data"]["config_type_weights"]
    save_checkpoint(state, last)
    result = train(small_config(ethanol_small, max_epochs=2), out_dir=tmp_path / "r",
                   resume=True, progress=False)
    assert result.epochs == 2
