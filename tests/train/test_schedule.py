"""LRSchedule: warm-up, plateau, and cosine over epochs or over the time budget (wall or CPU
clock)."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mlff.train.config import SchedulerConfig
from mlff.train.schedule import LRSchedule
from mlff.train.trainer import train

from .conftest import small_config


def _schedule(budget_seconds=math.inf, **config):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return LRSchedule(optimizer, SchedulerConfig(**{"name": "cosine", "min_lr": 0.0, **config}),
                      1.0, max_epochs=100, budget_seconds=budget_seconds)


def test_cosine_over_epochs_without_a_budget():
    schedule = _schedule()
    assert schedule.lr(0, elapsed=1e9) == pytest.approx(1.0)  # no budget: time is ignored
    assert schedule.lr(50) == pytest.approx(0.5)
    assert schedule.lr(100) == pytest.approx(0.0)


def test_cosine_follows_the_budget_when_it_ends_the_run_first():
    schedule = _schedule(budget_seconds=60.0)
    assert schedule.start_epoch(0, elapsed=0.0) == pytest.approx(1.0)
    assert schedule.lr(1, elapsed=30.0) == pytest.approx(0.5)  # half the budget, 1% of epochs
    assert schedule.lr(2, elapsed=59.0) < 0.001
    assert schedule.lr(90, elapsed=1.0) == pytest.approx(schedule.lr(90))  # epochs further along


def test_budget_progress_starts_after_the_warm_up_and_resumes():
    schedule = _schedule(budget_seconds=100.0, warmup_epochs=2)
    assert schedule.lr(0, elapsed=0.0) == pytest.approx(1 / 3)
    assert schedule.lr(1, elapsed=10.0) == pytest.approx(2 / 3)
    assert schedule.start_epoch(2, elapsed=20.0) == pytest.approx(1.0)  # the warm-up took 20 s
    assert schedule.progress(3, elapsed=60.0) == pytest.approx(0.5)
    assert schedule.progress(3, elapsed=60.0) == pytest.approx(0.5)  # asking changes nothing
    resumed = _schedule(budget_seconds=100.0, warmup_epochs=2)
    resumed.load_state_dict(schedule.state_dict())
    assert resumed.lr(4, elapsed=60.0) == pytest.approx(schedule.lr(4, elapsed=60.0))


def test_a_run_stopped_by_its_budget_anneals(tmp_path, ethanol_small):
    config = small_config(ethanol_small, max_epochs=100_000, max_minutes=0.1, lr=1e-3,
                          scheduler={"name": "cosine", "min_lr": 0.0})
    result = train(config, out_dir=tmp_path / "run", progress=False)
    assert result.stop_reason == "time_budget"
    rates = [json.loads(line)["lr"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(rates) >= 5 and rates[-1] < 0.2 * rates[0]



def _epochs_trained_while_throttled(tmp_path: Path, train_file: Path, clock: str) -> int:
    """Train with a 1.5 s budget on ``clock`` while the process may run only 1/6 of the time."""
    tmp_path.mkdir(parents=True)
    config = small_config(train_file, max_epochs=100_000, max_minutes=0.025, budget_clock=clock)
    (tmp_path / "config.json").write_text(json.dumps(config))
    script = ("import json, sys; from mlff.train.trainer import train; "
              "train(json.load(open(sys.argv[1])), out_dir=sys.argv[2], progress=False)")
    log = tmp_path / "run" / "log.jsonl"
    process = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "config.json"),
                                str(tmp_path / "run")], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not log.exists():  # set-up done, the first epoch trained
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    while process.poll() is None and time.monotonic() < deadline:
        process.send_signal(signal.SIGSTOP)
        time.sleep(0.25)
        process.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    assert process.wait(timeout=60) == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[-1]["time"] <= 1.5 + records[-1]["time"] - records[-2]["time"]
    return len(records)


def test_a_budget_on_the_cpu_clock_is_not_used_up_by_waiting(tmp_path, ethanol_small):
    """Throttled to 1/6 of a core, a run on the wall clock trains for 1.5 s of wall time (about
    0.25 s of computation); one on the CPU clock trains for 1.5 s of computation."""
    wall = _epochs_trained_while_throttled(tmp_path / "wall", ethanol_small, "wall")
    cpu = _epochs_trained_while_throttled(tmp_path / "cpu", ethanol_small, "cpu")
    assert cpu >= 2 * wall, (cpu, wall)
