"""An architecture's ``avg_num_neighbors: null`` is filled from the training data."""

from typing import Literal

import pytest
import torch
import yaml
from pydantic import Field
from torch import nn

import mlff
from mlff.data import keys as K
from mlff.data.statistics import DataSummary
from mlff.models import registry
from mlff.models.io import read_metadata
from mlff.nn import CosineCutoff, scatter_sum
from mlff.train.config import validate_config
from mlff.train.data import load_training_data
from mlff.train.trainer import train

from .conftest import small_config


class NeighbourSum(nn.Module):
    """A tiny model that normalises a neighbour sum by ``avg_num_neighbors``."""

    class Config(registry.ModelConfig):
        architecture: Literal["test_neighbour_sum"] = "test_neighbour_sum"
        avg_num_neighbors: float | None = Field(None, gt=0)

    def __init__(self, config: Config, num_species: int) -> None:
        super().__init__()
        assert config.avg_num_neighbors is not None, "the trainer fills avg_num_neighbors"
        self.avg_num_neighbors = config.avg_num_neighbors
        self.embedding = nn.Embedding(num_species, 1)
        self.width = nn.Parameter(torch.tensor(1.0))
        self.envelope = CosineCutoff(config.cutoff)

    def forward(self, graph):
        sender, receiver = graph[K.EDGE_INDEX]
        lengths = graph[K.EDGE_LENGTHS]
        messages = torch.exp(-self.width * lengths) * self.envelope(lengths)
        neighbours = scatter_sum(messages, receiver, graph[K.SPECIES].shape[0])
        return self.embedding(graph[K.SPECIES]).squeeze(-1) + neighbours / self.avg_num_neighbors


@pytest.fixture
def neighbour_sum():
    """Register the test architecture for one test only (the docs test lists the registry)."""
    registry.register("test_neighbour_sum")(NeighbourSum)
    yield "test_neighbour_sum"
    registry._REGISTRY.pop("test_neighbour_sum")


def _config(train_file, **model):
    config = small_config(train_file, max_epochs=1)
    config["model"] = {"architecture": "test_neighbour_sum", "cutoff": 4.0, **model}
    return config


def test_avg_num_neighbors_comes_from_the_training_data(tmp_path, ethanol_small, neighbour_sum):
    config = _config(ethanol_small)
    result = train(config, out_dir=tmp_path / "run", progress=False)
    expected = load_training_data(validate_config(config)).avg_num_neighbors
    assert 1 < expected < 9  # ethanol, 4 Å: most but not all of the other 8 atoms
    stored = read_metadata(result.model_path)["hyperparameters"]["avg_num_neighbors"]
    assert stored == pytest.approx(expected)
    assert mlff.load_model(result.model_path).model.avg_num_neighbors == pytest.approx(expected)
    # the written config keeps the user's null (the number is a property of the data)
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["model"]["avg_num_neighbors"] is None


def test_a_given_avg_num_neighbors_is_kept(tmp_path, ethanol_small, neighbour_sum):
    result = train(_config(ethanol_small, avg_num_neighbors=3.5), out_dir=tmp_path / "run",
                   progress=False)
    assert read_metadata(result.model_path)["hyperparameters"]["avg_num_neighbors"] == 3.5


def test_resume_and_finetune_keep_the_stored_value(tmp_path, ethanol_small, neighbour_sum,
                                                   monkeypatch):
    first = train(_config(ethanol_small), out_dir=tmp_path / "run", progress=False)
    stored = read_metadata(first.model_path)["hyperparameters"]["avg_num_neighbors"]
    # from here on the data would give another number: resuming and fine-tuning ignore it
    monkeypatch.setattr(DataSummary, "mean_num_neighbors", lambda self: 99.0)
    config = _config(ethanol_small)
    config["training"]["max_epochs"] = 2
    resumed = train(config, out_dir=tmp_path / "run", resume=True, progress=False)
    assert resumed.epochs == 2
    assert read_metadata(resumed.model_path)["hyperparameters"]["avg_num_neighbors"] == stored

    finetune = small_config(ethanol_small, max_epochs=1)
    del finetune["model"]
    finetune["finetune"] = {"init_from": str(first.model_path)}
    tuned = train(finetune, out_dir=tmp_path / "tuned", progress=False)
    assert read_metadata(tuned.model_path)["hyperparameters"]["avg_num_neighbors"] == stored

    fresh = train(_config(ethanol_small), out_dir=tmp_path / "fresh", progress=False)
    assert read_metadata(fresh.model_path)["hyperparameters"]["avg_num_neighbors"] == 99.0
