"""The per-epoch reports: log.jsonl on the main process, console lines."""

import io
import json

import pytest
from rich.console import Console

from mlff.train.config import validate_config
from mlff.train.logs import ConsoleLog, JsonlLog
from mlff.train.trainer import Trainer

from .conftest import small_config


@pytest.fixture
def trainer(ethanol_small, tmp_path):
    return Trainer(validate_config(small_config(ethanol_small)), tmp_path, progress=False)


def _record(trainer, epoch, best):
    trainer.epoch = epoch
    return {"epoch": epoch, "lr": 1e-3, "best": best,
            "valid": {"loss": 0.5, "energy_mae_meV_per_atom": 1.0, "forces_mae_meV_per_A": 20.0}}


def test_jsonl_lines_come_from_the_main_process_only(trainer, tmp_path):
    JsonlLog(tmp_path / "a.jsonl", is_main=True).epoch_end(trainer, _record(trainer, 1, True))
    JsonlLog(tmp_path / "b.jsonl", is_main=False).epoch_end(trainer, _record(trainer, 1, True))
    assert json.loads((tmp_path / "a.jsonl").read_text())["epoch"] == 1
    assert not (tmp_path / "b.jsonl").exists()


def test_console_prints_better_and_every_tenth_epoch(trainer):
    out = io.StringIO()
    trainer.run.console = Console(file=out, width=200)
    with ConsoleLog(trainer.run, total=20, completed=0) as log:
        for epoch in range(1, 21):
            log.epoch_end(trainer, _record(trainer, epoch, best=epoch == 3))
    lines = [line for line in out.getvalue().splitlines() if line.startswith("epoch")]
    assert [line.split()[1] for line in lines] == ["3", "10", "20"]
    assert lines[0].endswith("*") and "F 20.0 meV/Å" in lines[0]
