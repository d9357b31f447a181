"""The L2-SP weight-space anchor of fine-tuning (``finetune.anchor``): its penalty, its
pull towards the pretrained weights, and the guards against an anchor without effect.

The foundation is the small SevenNet-architecture model of test_foundation_finetune, so
each test takes seconds.
"""

import warnings

import ase.io
import pytest
import torch

from mlff.errors import ConfigError, DataWarning
from mlff.models.io import read_metadata
from mlff.train.anchor import WeightAnchor
from mlff.train.config import validate_config
from mlff.train.trainer import Trainer, train
from mlff.uq.io import load_model

from .conftest import ETHANOL
from .test_foundation_finetune import _foundation


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("anchor")
    ase.io.write(folder / "ethanol.xyz", ase.io.read(ETHANOL / "train.xyz", ":10"))
    return {"foundation": _foundation(folder / "found.mlff", [8, 1, 29, 6]),
            "ethanol": folder / "ethanol.xyz"}


def _config(files, anchor=None, epochs=2, **finetune):
    if anchor is not None:
        finetune["anchor"] = anchor
    return validate_config({
        "seed": 3, "dtype": "float64", "threads": 1,
        "data": {"train": str(files["ethanol"]), "valid_fraction": 0.2, "cache_dir": None},
        "finetune": {"init_from": str(files["foundation"]), "lr_factor": 1.0,
                     "keep_e0s": False, **finetune},
        "training": {"batch_size": 2, "max_epochs": epochs, "lr": 0.02, "ema_decay": None},
    })


def _distance(model_path, foundation_path):
    """Σ ||θ − θ_foundation||² over the network's weights."""
    trained = load_model(model_path, single=True).model.state_dict()
    start = load_model(foundation_path, single=True).model.state_dict()
    return sum(float((trained[k] - start[k]).pow(2).sum()) for k in start)


def _train(config, folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return train(config, folder, progress=False)


def test_the_penalty_is_lambda_times_the_squared_distance(files, tmp_path):
    trainer = Trainer(_config(files, anchor=0.5), tmp_path, progress=False)
    anchor = trainer.anchor
    assert float(anchor.penalty().detach()) == 0.0  # the weights are the pretrained ones
    parameters = dict(trainer.potential.named_parameters())
    name = next(iter(parameters))
    with torch.no_grad():
        parameters[name].add_(0.1)
    expected = 0.5 * 0.01 * parameters[name].numel()
    assert float(anchor.penalty().detach()) == pytest.approx(expected, rel=1e-12)
    anchor.penalty().backward()  # the gradient pulls back: 2 λ (θ − θ⁰)
    torch.testing.assert_close(parameters[name].grad,
                               torch.full_like(parameters[name], 2 * 0.5 * 0.1))


def test_the_anchor_keeps_the_weights_near_the_foundation(files, tmp_path):
    naive = _train(_config(files), tmp_path / "naive")
    anchored = _train(_config(files, anchor=1000.0), tmp_path / "anchored")
    moved = _distance(naive.model_path, files["foundation"])
    held = _distance(anchored.model_path, files["foundation"])
    assert moved > 0 and held < 0.5 * moved
    metadata = read_metadata(anchored.model_path)
    assert metadata["training"]["finetune"]["anchor"] == 1000.0


def test_the_anchor_term_is_logged_and_counted_in_the_loss(files, tmp_path):
    import json

    _train(_config(files, anchor=1.0), tmp_path / "run")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(0 < row["train"]["anchor"] < row["train"]["loss"] for row in log)


def test_an_anchor_too_weak_to_matter_is_warned_about(files, tmp_path):
    with pytest.warns(UserWarning, match="finetune.anchor 1e-12 had no measurable effect"):
        _train(_config(files, anchor=1e-12), tmp_path / "run")


def test_an_effective_anchor_is_not_warned_about(files, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", DataWarning)
        train(_config(files, anchor=1.0, epochs=1), tmp_path / "run", progress=False)


def test_a_negative_anchor_is_refused(files):
    with pytest.raises(ConfigError, match="anchor"):
        _config(files, anchor=-1.0)


def test_an_anchor_with_nothing_to_anchor_is_refused(files, tmp_path):
    trainer = Trainer(_config(files), tmp_path, progress=False)
    for parameter in trainer.potential.parameters():
        parameter.requires_grad_(False)
    with pytest.raises(ConfigError, match="nothing to anchor"):
        WeightAnchor(trainer.potential, 1.0)


def test_entries_grown_for_new_elements_are_not_anchored(files, tmp_path):
    trainer = Trainer(_config(files), tmp_path, progress=False)
    name, parameter = next((n, p) for n, p in trainer.potential.named_parameters()
                           if p.dim() == 2)
    grown = torch.zeros(parameter.shape, dtype=torch.bool)
    grown[0] = True  # say the first row belongs to a new element
    anchor = WeightAnchor(trainer.potential, 1.0, {name: grown})
    with torch.no_grad():
        parameter[0].add_(1.0)
    assert float(anchor.penalty().detach()) == 0.0
    with torch.no_grad():
        parameter[1].add_(1.0)
    assert float(anchor.penalty().detach()) == pytest.approx(parameter.shape[1], rel=1e-12)
