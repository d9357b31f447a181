"""data.config_type_weights: a factor on the loss weight of each config_type's structures."""

import json

import ase.io
import pytest
import torch

from mlff.data import keys as K
from mlff.data.dataset import GraphDataset
from mlff.data.graph import collate
from mlff.data.readers import LabelKeys
from mlff.errors import ConfigError
from mlff.train.config import LossConfig
from mlff.train.guards import ZeroLossError
from mlff.train.loss import compute_loss, config_type_factors, reweight
from mlff.train.trainer import train
from tests import helpers

from .conftest import small_config


@pytest.fixture(scope="module")
def tagged_ethanol(tmp_path_factory, ethanol_small):
    """The 24 ethanol frames, alternately tagged config_type 'md' and 'opt'."""
    frames = ase.io.read(ethanol_small, ":")
    for i, atoms in enumerate(frames):
        atoms.info["config_type"] = "md" if i % 2 else "opt"
    path = tmp_path_factory.mktemp("tagged") / "tagged.xyz"
    ase.io.write(path, frames)
    return path


def _batch(tmp_path):
    frames = []
    molecules = [helpers.ethanol(seed=1), helpers.water(seed=2), helpers.ethanol(seed=3),
                 helpers.water(seed=4), helpers.water(seed=5)]
    for i, atoms in enumerate(molecules):
        frame = helpers.with_random_labels(atoms, seed=i)
        frame.info["config_type"] = "ethanol" if len(atoms) == 9 else "water"
        if i == 2:
            frame.info["weight"] = 3.0  # the structure's own weight is kept and multiplied
        frames.append(frame)
    path = tmp_path / "mixed.xyz"
    ase.io.write(path, frames, format="extxyz")
    dataset = GraphDataset.from_file(path, 4.0, LabelKeys(), cache_dir=None)
    return dataset, collate(list(dataset))


def test_factors_multiply_the_structure_weights(tmp_path):
    dataset, batch = _batch(tmp_path)
    assert dataset.config_types == ["ethanol", "water"]
    factors = config_type_factors(dataset.config_types, {"water": 0.5})
    weighted = reweight(batch, factors)
    assert weighted[K.WEIGHT].tolist() == [1.0, 0.5, 3.0, 0.5, 0.5]
    assert batch[K.WEIGHT].tolist() == [1.0, 1.0, 3.0, 1.0, 1.0]  # not modified in place
    assert config_type_factors(dataset.config_types, {}) is None
    assert reweight(batch, None) is batch


def test_weights_change_the_loss_and_zero_removes_a_config_type(tmp_path):
    dataset, batch = _batch(tmp_path)
    potential = helpers.build_potential("painn")
    pred = {k: v.detach() for k, v in potential(batch, compute_stress=False).items()}
    config = LossConfig(energy_weight=1.0, forces_weight=10.0)
    is_water = batch[K.CONFIG_TYPE] == dataset.config_types.index("water")
    atom_is_water = is_water[batch[K.BATCH]]
    num_structures, num_atoms = len(is_water), len(atom_is_water)

    def sums(weights):
        """Per config_type, the weighted sums of the squared errors in the loss terms."""
        _, parts = compute_loss(pred, reweight(batch, config_type_factors(dataset.config_types,
                                                                             weights)), config)
        return parts["energy"] * num_structures, parts["forces"] * num_atoms

    only_water = sums({"ethanol": 0.0})
    only_ethanol = sums({"water": 0.0})
    both = sums({})
    for term in range(2):
        assert both[term] == pytest.approx(only_water[term] + only_ethanol[term])
        expected = only_ethanol[term] + 2.5 * only_water[term]
        assert sums({"water": 2.5})[term] == pytest.approx(expected)
    assert sums({"water": 0.0, "ethanol": 0.0}) == (0.0, 0.0)

    # a weight of 0 removes water: the terms are those of the ethanol structures alone
    # (averaged over all labelled entries of the batch, like the structure weights)
    energy_error = ((pred[K.ENERGY] - batch[K.ENERGY]) / batch[K.NUM_ATOMS]) ** 2
    expected = (energy_error * batch[K.WEIGHT])[~is_water].sum()
    assert only_ethanol[0] == pytest.approx(float(expected))
    force_error = ((pred[K.FORCES] - batch[K.FORCES]) ** 2).mean(dim=-1)
    expected = (force_error * batch[K.WEIGHT][batch[K.BATCH]])[~atom_is_water].sum()
    assert only_ethanol[1] == pytest.approx(float(expected))


def test_unknown_config_type_names_the_present_ones(tmp_path, tagged_ethanol):
    config = small_config(tagged_ethanol, max_epochs=1)
    config["data"]["config_type_weights"] = {"md": 2.0, "surface": 1.0}
    with pytest.raises(ConfigError, match=r"'surface'.*present are: 'md', 'opt'"):
        train(config, out_dir=tmp_path / "bad", progress=False)
    config["data"]["config_type_weights"] = {"md": -1.0}
    with pytest.raises(ConfigError, match="config_type_weights"):
        train(config, out_dir=tmp_path / "negative", progress=False)


def test_training_and_validation_losses_are_reweighted(tmp_path, tagged_ethanol):
    config = small_config(tagged_ethanol, max_epochs=1)
    config["data"]["config_type_weights"] = {"md": 0.0, "opt": 0.0}
    with pytest.raises(ZeroLossError, match="exactly 0 in epoch 1"):  # it could learn nothing
        train(config, out_dir=tmp_path / "zero", progress=False)
    config["data"]["config_type_weights"] = {"md": 0.0}
    train(config, out_dir=tmp_path / "md_zero", progress=False)
    line = json.loads((tmp_path / "md_zero" / "log.jsonl").read_text().splitlines()[0])
    assert line["train"]["loss"] > 0 and line["valid"]["forces_mae_meV_per_A"] > 0

    config["data"]["config_type_weights"] = {"md": 3.0}
    train(config, out_dir=tmp_path / "three", progress=False)
    config["data"]["config_type_weights"] = {}
    train(config, out_dir=tmp_path / "one", progress=False)
    three, one = (json.loads((tmp_path / name / "log.jsonl").read_text().splitlines()[0])
                  for name in ("three", "one"))
    assert three["train"]["loss"] > one["train"]["loss"]
    assert torch.isfinite(torch.tensor(three["valid"]["loss"]))
