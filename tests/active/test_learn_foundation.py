"""`mlff learn` configs that start from a (foundation) model file."""

import yaml

from mlff.active.config import load_learn_config, train_config
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


def test_warm_starts_keep_the_fine_tuning_settings(tmp_path, cu_cells):
    """Iterations after the first start from the previous committee; the user's freeze,
    replay and E0 settings of a foundation start still apply to them."""
    starts, test = cu_cells
    config = learn_config(starts, test)
    config["train"]["finetune"] = {"init_from": "found.mlff", "freeze": ["model.embedding"],
                                   "keep_e0s": False, "replay": {"weight": 3.0}}
    (tmp_path / "learn.yaml").write_text(yaml.safe_dump(config))
    loaded = load_learn_config(tmp_path / "learn.yaml")
    warm = train_config(loaded, "train.xyz", warm_from="iter_001/member_{member}.mlff")
    assert warm.finetune.init_from == "iter_001/member_{member}.mlff"
    assert warm.finetune.lr_factor == loaded.retrain.warm_lr_factor
    assert warm.finetune.freeze == ["model.embedding"]
    assert warm.finetune.keep_e0s is False
    assert warm.finetune.replay.weight == 3.0


def test_member_recipes_name_their_files_relative_to_the_config(tmp_path, cu_cells):
    """A committee whose members differ in recipe (committee.members) finds their replay
    files next to the learn config, like the shared finetune section's."""
    starts, test = cu_cells
    config = learn_config(starts, test)
    config["train"]["finetune"] = {"init_from": "found.mlff"}
    config["train"]["committee"] = {
        "size": 2, "members": [{}, {"finetune": {"replay": {"structures": "pool.xyz"}}}]}
    (tmp_path / "learn.yaml").write_text(yaml.safe_dump(config))
    loaded = load_learn_config(tmp_path / "learn.yaml")
    member = loaded.train["committee"]["members"][1]
    assert member["finetune"]["replay"]["structures"] == str(tmp_path / "pool.xyz")
    assert loaded.train["committee"]["members"][0] == {}
