"""Fine-tuning the e3nn architectures on data with an element the pretrained model lacks.

Their species enter through one-hot ``o3.Linear`` embeddings, species-dependent
self-connections/skips and per-species weights, which the architecture grows
(``Architecture.grow_species``): the extended model predicts exactly what the pretrained
one did for the old elements, and the new element's entries train.
"""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from mlff.data import keys as K
from mlff.models import save_model
from mlff.train.config import validate_config
from mlff.train.data import load_training_data
from mlff.train.finetune import potential_from_pretrained
from mlff.train.trainer import train
from mlff.uq.io import load_model
from tests import helpers

H, C, N, O = 1, 6, 7, 8


def _labelled(formula: str, count: int, seed: int):
    frames = []
    for k in range(count):
        atoms = molecule(formula)
        atoms.rattle(0.08, seed=seed + k)
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def ethylamine(tmp_path_factory):
    path = tmp_path_factory.mktemp("elements") / "ethylamine.xyz"
    ase.io.write(path, _labelled("CH3CH2NH2", 8, seed=0))
    return path


# a species-dependent weight of each, frozen: its new element's entries still train
@pytest.mark.parametrize(("architecture", "frozen"), [("mace", "embedding.weight"),
                                                      ("nequip", "embedding.weight"),
                                                      ("allegro", "two_body.0.weight")])
def test_finetune_adds_an_element(architecture, frozen, ethylamine, tmp_path):
    pretrained = helpers.build_potential(architecture, species=(H, C, O), e0s=(-1.0, -2.0, -3.0),
                                         seed=2)
    path = save_model(pretrained, tmp_path / "pretrained.mlff")
    config = validate_config({
        "seed": 3,
        "dtype": "float64",
        "data": {"train": str(ethylamine), "valid_fraction": 0.25, "cache_dir": None,
                 "e0s": {"H": -1.0, "C": -2.0, "N": -2.5, "O": -3.0}},
        "training": {"batch_size": 3, "max_epochs": 2, "lr": 0.01},
        # E0s kept as they are (auto would refit them: random weights are far off EMT)
        "finetune": {"init_from": str(path), "freeze": [f"model.{frozen}"], "keep_e0s": True},
    })
    start = potential_from_pretrained(config, load_training_data(config))
    assert start.species == [H, C, N, O]

    # before training: the old elements' predictions are the pretrained model's
    alcohol = molecule("CH3OH")
    alcohol.rattle(0.05, seed=9)
    graph = helpers.graph_of(alcohol, pretrained.cutoff)
    expected, got = pretrained(graph), start.eval()(graph)
    np.testing.assert_allclose(got[K.ENERGY].detach(), expected[K.ENERGY].detach(),
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(got[K.FORCES], expected[K.FORCES], rtol=0, atol=1e-10)

    # the frozen species-dependent weight keeps training its N entries only
    weight = dict(start.model.named_parameters())[frozen]
    assert weight.requires_grad
    assert weight.numel() > dict(pretrained.model.named_parameters())[frozen].numel()
    weight = weight.detach().clone()

    result = train(config, tmp_path / "ft", progress=False)
    final = load_model(result.model_path)
    assert final.species == [H, C, N, O]
    changed = dict(final.model.named_parameters())[frozen].detach() != weight
    fresh = start.model.species_parameters()[frozen].species == 2  # N
    assert changed[fresh].any() and not changed[~fresh].any()
    # the rest of the network trained (nothing else was frozen)
    weights = dict(final.model.named_parameters())
    assert any(not torch.equal(weights[name], p.detach())
               for name, p in start.model.named_parameters() if name != frozen)
