"""Executors: the process pool and a Dask LocalCluster label alike, as results arrive."""

from __future__ import annotations

import os

import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlff.errors import ConfigError
from mlff.oracles import ExecutorConfig, label_many, make_executor
from mlff.oracles.executors import DaskExecutor, default_workers
from tests import helpers


def _label(executor, structures, config):
    delivered = []
    results = label_many(structures, config, executor,
                         on_result=lambda index, result: delivered.append((index, result)))
    assert sorted(index for index, _ in delivered) == list(range(len(structures)))
    for index, result in delivered:  # on_result got the very results that are returned
        assert results[index] is result
    return results


def test_process_pool_and_dask_local_cluster_give_the_same_labels():
    structures = [helpers.copper(seed=s) for s in range(4)] + [helpers.water(seed=9)]
    with make_executor(ExecutorConfig(workers=2)) as executor:
        pool = _label(executor, structures, {"type": "emt"})
    with make_executor(ExecutorConfig(local_cluster=True, workers=1)) as executor:
        assert isinstance(executor, DaskExecutor)
        cluster = _label(executor, structures, {"type": "emt"})
        # a timeout runs the calculation in a child process: possible in a Dask worker,
        # which is a daemonic process (no multiprocessing children)
        (isolated,) = _label(executor, structures[:1], {"type": "emt", "timeout": 120.0})
    assert isolated.ok, isolated.reason
    assert isolated.atoms.get_potential_energy() == pytest.approx(
        cluster[0].atoms.get_potential_energy(), rel=1e-12)
    for atoms, a, b in zip(structures, pool, cluster):
        assert a.ok and b.ok, (a.reason, b.reason)
        reference = atoms.copy()
        reference.calc = EMT()
        for result in (a, b):
            np.testing.assert_array_equal(result.atoms.positions, atoms.positions)
            assert result.atoms.get_potential_energy() == pytest.approx(
                reference.get_potential_energy(), rel=1e-12)
            np.testing.assert_allclose(result.atoms.get_forces(), reference.get_forces(),
                                       rtol=1e-12, atol=1e-12)
        assert set(a.atoms.calc.results) == set(b.atoms.calc.results)


def test_label_many_checks_the_config_before_submitting():
    with make_executor(ExecutorConfig(workers=1)) as executor:
        with pytest.raises(ConfigError, match="unknown key 'bogus'"):
            label_many([helpers.copper()], {"type": "emt", "bogus": 1}, executor)


def test_executor_config():
    assert ExecutorConfig().workers is None and default_workers() >= 1
    assert default_workers() == len(os.sched_getaffinity(0))
    with pytest.raises(ValueError, match="not both"):
        ExecutorConfig(scheduler="tcp://localhost:8786", local_cluster=True)
    with pytest.raises(ValueError, match="scheduler's workers"):
        ExecutorConfig(scheduler="tcp://localhost:8786", workers=4)
    with pytest.raises(ValueError):
        ExecutorConfig(workers=0)
    assert issubclass(DaskExecutor, __import__("concurrent.futures").futures.Executor)
