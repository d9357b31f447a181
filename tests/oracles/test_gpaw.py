"""The ``gpaw`` oracle with real GPAW: gradients, failures, MPI ranks.

Cheap settings (200-250 eV, 2x2x2 k-points): the checks are about internal consistency,
forces and stress against central differences of GPAW's own (free) energy.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import numpy as np
import pytest

from mlff.oracles import load_oracle
from tests.oracles import dft

pytest.importorskip("gpaw", reason="GPAW is not installed (pip install mlff[dft])")

CHEAP = {"type": "gpaw", "cutoff": 250.0, "kpts": [2, 2, 2], "eps_scf": 1.0e-7}


def _energy(oracle):
    def energy(atoms):
        result = oracle.label(atoms)
        assert result.ok, result.reason
        return result.atoms.get_potential_energy()
    return energy


def test_silicon_forces_and_stress_are_gradients_of_the_energy(tmp_path):
    # 400 eV: at 250 eV the finite-difference stress, at a fixed cutoff, carries a Pulay
    # stress of ~3e-3 eV/Å³ (the plane-wave set changes with the cell); GPAW's analytic
    # stress, at a fixed set, does not
    oracle = load_oracle({**CHEAP, "cutoff": 400.0, "directory": str(tmp_path)})
    assert oracle.name == "gpaw:PBE/pw400"
    atoms = dft.silicon2()
    result = oracle.label(atoms)
    assert result.ok, result.reason
    forces, stress = result.atoms.get_forces(), result.atoms.get_stress()
    assert np.abs(forces).max() > 0.2 and np.abs(stress).max() > 1e-3  # not at a minimum
    assert not any(tmp_path.iterdir())  # per-calculation folders removed after successes
    # every force and stress component at once: along a generic displacement and strain,
    # with one calculator (its wave functions carry over between displacements)
    calc = oracle.make_calculator()

    def energy(moved):
        moved = moved.copy()
        moved.calc = calc
        return moved.get_potential_energy()

    direction = dft.generic_direction(atoms)
    assert (forces * direction).sum() == pytest.approx(
        dft.fd_force_along(energy, atoms, direction), abs=1e-3)
    assert dft.stress_contraction(stress) == pytest.approx(
        dft.fd_stress_along(energy, atoms), abs=2e-4)


def test_water_forces_are_gradients_of_the_energy():
    oracle = load_oracle({**CHEAP, "cutoff": 400.0})  # 300 eV: 1.6e-3 eV/Å off (grid)
    atoms = dft.water()
    result = oracle.label(atoms)
    assert result.ok, result.reason
    assert set(result.atoms.calc.results) == {"energy", "forces"}  # not periodic: no stress
    components = [(0, 2), (1, 1)]
    numeric = dft.fd_forces(_energy(oracle), atoms, components)
    forces = result.atoms.get_forces()
    np.testing.assert_allclose([forces[a, x] for a, x in components], numeric, atol=1e-3)


def test_unconverged_scf_is_a_recorded_failure(tmp_path):
    oracle = load_oracle({**CHEAP, "max_scf": 3, "directory": str(tmp_path)})
    result = oracle.label(dft.silicon2())
    assert not result.ok and result.atoms is None
    assert "KohnShamConvergenceError" in result.reason
    assert str(tmp_path) in result.reason  # GPAW's log kept for inspection


def test_killed_process_is_a_recorded_failure():
    # with a timeout each calculation runs in its own process: kill it mid-calculation
    oracle = load_oracle({**CHEAP, "kpts": [6, 6, 6], "cutoff": 400.0, "timeout": 300.0})
    killed = []

    def kill_child():
        me = os.getpid()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as stream:
                        cmdline = stream.read()
                    with open(f"/proc/{pid}/stat") as stream:
                        parent = int(stream.read().rsplit(")", 1)[1].split()[1])
                except OSError:
                    continue
                if parent == me and b"mlff.oracles._child" in cmdline:
                    time.sleep(1.0)  # inside the calculation
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    break
            time.sleep(0.1)

    thread = threading.Thread(target=kill_child)
    thread.start()
    result = oracle.label(dft.silicon2())
    thread.join()
    assert killed
    assert not result.ok and "killed by signal 9" in result.reason


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="no mpiexec")
def test_two_mpi_ranks_give_the_one_rank_labels():
    atoms = dft.silicon2()
    one = load_oracle(CHEAP).label(atoms)
    two = load_oracle({**CHEAP, "ranks": 2, "timeout": 300.0}).label(atoms)
    assert one.ok and two.ok, two.reason
    assert two.atoms.get_potential_energy() == pytest.approx(one.atoms.get_potential_energy(),
                                                             abs=1e-5)
    np.testing.assert_allclose(two.atoms.get_forces(), one.atoms.get_forces(), atol=1e-4)
    np.testing.assert_allclose(two.atoms.get_stress(), one.atoms.get_stress(), atol=1e-5)
