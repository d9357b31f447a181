"""`mlff learn` configs that start from a (foundation) model file."""

import yaml

from mlff.active.config import load_learn_config
from tests.active.conftest import learn_config


def test_a_relative_foundation_path_is_resolved_against_the_config(tmp_path, cu_cells):
    starts, test = cu_cells
    config = learn_config(starts, test)
    config["train"]["finetune"] = {"init_from": "found.mlff",
                                   "replay": {"structures": "pool.xyz"}}
    (tmp_path / "learn.yaml").write_text(yaml.safe_dump(config))
    loaded = load_learn_config(tmp_path / "learn.yaml")
    assert loaded.train["finetune"]["init_from"] == str(tmp_path / "found.mlff")
    assert loaded.train["finetune"]["replay"]["structures"] == str(tmp_path / "pool.xyz")
