"""What keeps a checkpoint resumable, and the log cut back to it."""

import json

from mlff.train.resume import _differences, truncate_log


def test_only_stopping_keys_and_new_empty_keys_may_differ():
    saved = {"seed": 1, "training": {"lr": 0.1, "max_epochs": 5, "max_minutes": None}}
    current = {"seed": 1, "training": {"lr": 0.1, "max_epochs": 9, "max_minutes": 3.0,
                                       "stage_two": None},
               "committee": None, "tags": {}}
    assert _differences(saved, current) == []
    current["training"]["lr"] = 0.2
    current["seed"] = 2
    current["new"] = 1  # a key absent from the checkpoint but set
    assert _differences(saved, current) == ["new", "seed", "training.lr"]


def test_log_lines_after_the_checkpoint_are_dropped(tmp_path):
    path = tmp_path / "log.jsonl"
    truncate_log(path, 2)  # no log yet: nothing to do
    assert not path.exists()
    path.write_text("".join(json.dumps({"epoch": e}) + "\n" for e in (1, 2, 3)) + "\n")
    truncate_log(path, 2)
    assert [json.loads(line)["epoch"] for line in path.read_text().splitlines()] == [1, 2]
