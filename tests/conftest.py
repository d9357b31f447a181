"""Shared fixtures: seeded, built in code (ase.build + rattle), no downloads."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from tests import helpers


def pytest_configure(config):
    """One intra-op thread: the test models are tiny, and on a busy machine torch's thread
    pool costs ~100x more than the arithmetic (0.6 s instead of 3 ms per PaiNN call)."""
    torch.set_num_threads(1)
    os.environ.setdefault("MLFF_NUM_THREADS", "1")  # calculators and trainers keep to it


# files that take minutes, run first: a parallel run (make test) hands out whole files in
# collection order, and one of these started last would finish alone on one core
LONG_FILES = ("tests/calculators/lammps/test_aoti.py",
              "tests/test_docs_commands.py", "tests/train/test_matrix.py",
              "tests/cli/test_label_dft.py", "tests/oracles/test_cp2k.py",
              "tests/test_install.py", "tests/imports/test_mace.py", "tests/oracles/test_gpaw.py",
              "tests/calculators/lammps/test_exchange.py")


def pytest_collection_modifyitems(items):
    """The long files first (each file's tests keep their order)."""
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        return LONG_FILES.index(path) if path in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)


@pytest.fixture(autouse=True, scope="module")
def _close_cp2k_shells():
    """Close the CP2K shells a module's tests kept open (idle, their MPI runtime still
    polls the CPU, which slows every later test of this process)."""
    yield
    cp2k = sys.modules.get("mlff.oracles.cp2k")
    if cp2k is not None:
        cp2k.close_shells()


@pytest.fixture(autouse=True)
def _seed_and_dtype():
    """Seed every test, keep TF32 off, and restore torch's default dtype and thread count
    afterwards (two test processes share the cores: more threads would oversubscribe them)."""
    torch.manual_seed(0)
    np.random.seed(0)
    default = torch.get_default_dtype()
    threads = torch.get_num_threads()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.set_default_dtype(default)
    if torch.get_num_threads() != threads:  # a trainer's or calculator's own choice
        torch.set_num_threads(threads)


@pytest.fixture
def ethanol():
    """Rattled ethanol (non-periodic)."""
    return helpers.ethanol()


@pytest.fixture
def water():
    """Rattled water (non-periodic)."""
    return helpers.water()


@pytest.fixture
def copper():
    """Rattled, slightly sheared cubic fcc Cu cell (4 atoms, periodic)."""
    return helpers.copper()


@pytest.fixture
def labelled_frames():
    """Five structures with random SinglePointCalculator labels: molecules and bulk Cu."""
    frames = [helpers.ethanol(seed=s) for s in (1, 2)]
    frames += [helpers.water(seed=3), helpers.copper(seed=4), helpers.copper(seed=5)]
    return [helpers.with_random_labels(a, seed=i) for i, a in enumerate(frames)]


@pytest.fixture
def extxyz_file(tmp_path, labelled_frames):
    """The labelled frames written as extxyz."""
    import ase.io

    path = tmp_path / "frames.xyz"
    ase.io.write(path, labelled_frames, format="extxyz")
    return path


@pytest.fixture(params=sorted(helpers.TINY_HYPERPARAMETERS))
def architecture(request):
    """Every architecture with a tiny configuration."""
    return request.param


@pytest.fixture
def potential(architecture):
    """A tiny float64 Potential of ``architecture`` over H, C, O, Cu (cutoff 4 Å)."""
    return helpers.build_potential(architecture, scale=10.0, shift=0.25)
