"""The Oracle interface with EMT and test calculators: labels, failures, timeouts."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlff.oracles import load_oracle
from tests import helpers

TEST_CALCULATORS = "tests.oracles.calculators"


def _emt_directly(atoms):
    reference = atoms.copy()
    reference.calc = EMT()
    return reference


def test_emt_labels_equal_emt_directly():
    oracle = load_oracle({"type": "emt"})
    copper = helpers.copper(seed=4)
    copper.info["config_type"] = "bulk"
    before = copper.positions.copy()
    result = oracle.label(copper)
    assert result.ok and result.reason is None and result.wall_time > 0
    reference = _emt_directly(copper)
    labelled = result.atoms
    assert labelled is not copper and copper.calc is None
    np.testing.assert_array_equal(copper.positions, before)  # input untouched
    np.testing.assert_array_equal(labelled.positions, copper.positions)
    assert labelled.info["config_type"] == "bulk"
    assert labelled.get_potential_energy() == pytest.approx(reference.get_potential_energy(),
                                                            rel=1e-12)
    np.testing.assert_allclose(labelled.get_forces(), reference.get_forces(), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(labelled.get_stress(), reference.get_stress(), rtol=1e-12,
                               atol=1e-12)
    assert np.abs(labelled.get_stress()).max() > 1e-4  # a strained cell: a real stress

    # a molecule is not periodic: no stress
    water = helpers.water(seed=5)
    molecule_result = oracle.label(water)
    assert molecule_result.ok
    assert set(molecule_result.atoms.calc.results) == {"energy", "forces"}
    np.testing.assert_allclose(molecule_result.atoms.get_forces(),
                               _emt_directly(water).get_forces(), rtol=1e-12, atol=1e-12)

    # only what was asked for
    energy_only = load_oracle({"type": "emt", "properties": ["energy"]}).label(copper)
    assert set(energy_only.atoms.calc.results) == {"energy"}

    # the same calculator through type 'ase' and make_calculator
    by_path = load_oracle({"type": "ase", "calculator": "ase.calculators.emt:EMT"})
    assert by_path.label(copper).atoms.get_potential_energy() == pytest.approx(
        labelled.get_potential_energy(), rel=1e-12)
    assert isinstance(oracle.make_calculator(), EMT)


def test_failures_are_results_not_exceptions():
    from ase.build import bulk

    uranium = load_oracle({"type": "emt"}).label(bulk("U", "fcc", a=4.3))
    assert not uranium.ok and uranium.atoms is None
    assert uranium.reason.startswith("NotImplementedError") and "U" in uranium.reason

    nan = load_oracle({"type": "ase", "calculator": f"{TEST_CALCULATORS}:NaNCalculator"})
    result = nan.label(helpers.copper())
    assert not result.ok and "non-finite energy" in result.reason


def test_isolated_run_reports_a_crash_of_the_calculation(tmp_path):
    # with a timeout each calculation runs in a child process (whose labels equal the
    # in-process ones: see test_executors), so a code that dies is a failed result
    crash = load_oracle({"type": "ase", "calculator": f"{TEST_CALCULATORS}:CrashCalculator",
                         "kwargs": {"directory": str(tmp_path)}, "timeout": 120})
    result = crash.label(helpers.copper())
    assert not result.ok and result.atoms is None
    assert "the oracle process was killed by signal 9" in result.reason


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (killed, not yet reaped by its parent) is dead too
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stream:
            return stream.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_timeout_kills_the_calculation_and_its_helper_program(tmp_path):
    pid_file = tmp_path / "pids.txt"
    oracle = load_oracle({"type": "ase", "calculator": f"{TEST_CALCULATORS}:HelperCalculator",
                          "kwargs": {"delay": 120.0, "pid_file": str(pid_file),
                                     "directory": str(tmp_path / "runs")},
                          "timeout": 6.0})
    start = time.perf_counter()
    result = oracle.label(helpers.copper())
    elapsed = time.perf_counter() - start
    assert not result.ok and result.atoms is None
    assert "timed out after 6 s" in result.reason
    assert 6.0 <= elapsed < 30.0 and result.wall_time >= 6.0
    # the calculation had started (child start-up is far below 6 s) and is gone, helper too
    calculation, helper = map(int, pid_file.read_text().split())
    deadline = time.time() + 5
    while (_alive(calculation) or _alive(helper)) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(calculation) and not _alive(helper)


def test_each_ase_calculation_works_in_a_folder_of_its_own(tmp_path):
    from ase.build import bulk

    runs, calls = tmp_path / "runs", tmp_path / "calls.txt"
    oracle = load_oracle({"type": "ase", "calculator": f"{TEST_CALCULATORS}:SlowCalculator",
                          "kwargs": {"directory": str(runs), "counter_file": str(calls)}})
    assert oracle.label(helpers.copper(seed=1)).ok and oracle.label(helpers.copper(seed=2)).ok
    folders = [line.split()[1] for line in calls.read_text().splitlines()]
    assert len(set(folders)) == 2 and all(f.startswith(str(runs)) for f in folders)
    assert list(runs.iterdir()) == []  # removed after a success

    failed = oracle.label(bulk("U", "fcc", a=4.3))  # EMT has no uranium
    assert not failed.ok
    (kept,) = runs.iterdir()  # kept after a failure, with the calculation's files
    assert f"files are kept in {kept}" in failed.reason
    assert (kept / "input.txt").read_text() == "U\n"
