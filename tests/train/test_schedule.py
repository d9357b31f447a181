"""LRSchedule: warm-up, plateau, and cosine over epochs or over the wall-clock budget."""

import json
import math

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
    assert schedule.lr(0, elapsed=0.0) == pytest.approx(1.0)
    assert schedule.lr(1, elapsed=30.0) == pytest.approx(0.5)  # half the budget, 1% of epochs
    assert schedule.lr(2, elapsed=59.0) < 0.001
    assert schedule.lr(90, elapsed=1.0) == pytest.approx(schedule.lr(90))  # epochs further along


def test_budget_progress_starts_after_the_warm_up_and_resumes():
    schedule = _schedule(budget_seconds=100.0, warmup_epochs=2)
    assert schedule.lr(0, elapsed=0.0) == pytest.approx(1 / 3)
    assert schedule.lr(1, elapsed=10.0) == pytest.approx(2 / 3)
    assert schedule.lr(2, elapsed=20.0) == pytest.approx(1.0)  # the warm-up took 20 s
    assert schedule.progress(3, elapsed=60.0) == pytest.approx(0.5)
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
