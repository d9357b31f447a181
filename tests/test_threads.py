"""Thread choice: explicit settings win; the automatic one counts the cores other
processes keep busy (a real spinning process here) and follows a load that appears."""

import os
import subprocess
import sys
import time

import ase.io
import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from mlff import threads as T
from mlff.models.io import read_metadata
from mlff.train.trainer import train
from tests.train.conftest import small_config

# the other workers of a parallel run would be busy cores to the thread choice
pytestmark = pytest.mark.serial

SPIN = "import os, time\nos.sched_setaffinity(0, {%d})\nend = time.time() + %f\nwhile time.time() < end: pass"


@pytest.fixture
def automatic(monkeypatch):
    """No thread count in the environment; torch's count restored afterwards."""
    for name in ("MLFF_NUM_THREADS", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def spinner(core: int, seconds: float) -> subprocess.Popen:
    """A process keeping one core busy for ``seconds``."""
    return subprocess.Popen([sys.executable, "-c", SPIN % (core, seconds)])


def test_explicit_counts_win(automatic, monkeypatch):
    assert T.ThreadGovernor(3).choice.source == "config"
    assert torch.get_num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    choice = T.ThreadGovernor().choice
    assert (choice.threads, choice.source) == (2, "environment")
    monkeypatch.setenv("MLFF_NUM_THREADS", "1")
    assert T.ThreadGovernor().threads == 1
    governor = T.ThreadGovernor(interval=0.0)
    assert governor.update() is None and governor.threads == 1  # never changed


def test_available_cores_follow_the_affinity():
    code = ("import os; os.sched_setaffinity(0, {0}); from mlff.threads import available_cores; "
            "print(available_cores())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_a_busy_core_is_left_alone_and_the_choice_follows_the_load(automatic):
    cores = sorted(os.sched_getaffinity(0))
    busy = spinner(cores[0], 3.0)
    try:
        time.sleep(0.5)
        governor = T.ThreadGovernor(interval=0.0)
        assert governor.choice.source == "automatic"
        assert governor.choice.busy_elsewhere >= 0.6
        assert governor.threads <= len(cores) - 1
        assert torch.get_num_threads() == governor.threads
        assert "automatic" in governor.choice.describe()
    finally:
        busy.wait()
    # the load is gone: one more spinner started later lowers the count again
    governor = T.ThreadGovernor(interval=0.0)
    many = [spinner(c, 2.0) for c in cores]
    try:
        time.sleep(1.0)
        governor.update()
        assert governor.threads == 1
        assert governor.choice.busy_elsewhere >= len(cores) - 1
    finally:
        for process in many:
            process.wait()


def test_the_command_line_leaves_the_wait_policy_alone(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    code = "import mlff.cli.main, os; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "unset"


def test_a_trained_model_records_its_thread_choice(tmp_path, monkeypatch):
    frames = []
    for seed in range(6):
        atoms = molecule("H2O")
        atoms.rattle(0.05, seed=seed)
        atoms.calc = SinglePointCalculator(atoms, energy=float(seed), forces=np.zeros((3, 3)))
        frames.append(atoms)
    ase.io.write(tmp_path / "w.xyz", frames)
    monkeypatch.setenv("MLFF_NUM_THREADS", "1")
    result = train(small_config(tmp_path / "w.xyz", max_epochs=1), out_dir=tmp_path / "run",
                   progress=False)
    assert read_metadata(result.model_path)["training"]["threads"].startswith("1 thread (environment")
