"""The child process of a calculation with a timeout or MPI ranks: its environment."""

from __future__ import annotations

from mlff.oracles.config import load_oracle_config
from mlff.oracles.isolate import _child_environment


def test_dft_children_run_the_configured_threads(monkeypatch):
    # a DFT calculation with a timeout runs in a child: it gets the oracle's threads,
    # not the parent's (BLAS would otherwise start a thread per core under MPI ranks)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.delenv("GPAW_MPI_BACKEND", raising=False)
    gpaw = load_oracle_config({"type": "gpaw", "threads": 1})
    assert _child_environment(gpaw, mpi=False)["OMP_NUM_THREADS"] == "1"
    assert "GPAW_MPI_BACKEND" not in _child_environment(gpaw, mpi=False)
    assert _child_environment(gpaw, mpi=True)["GPAW_MPI_BACKEND"] == "cgpaw"
    two = load_oracle_config({"type": "gpaw", "threads": 2, "ranks": 2})
    assert _child_environment(two, mpi=True)["OMP_NUM_THREADS"] == "2"
    assert _child_environment(load_oracle_config({"type": "emt"}), mpi=False) is None
