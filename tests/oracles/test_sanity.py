"""The sanity guard: absurd forces and energies are suspect failures, not labels."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from mlff.oracles import load_oracle
from mlff.oracles.compute import LabelResult
from mlff.oracles.sanity import EnergyGuard, suspect_forces


def _labelled(atoms, energy):
    atoms = atoms.copy()
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((len(atoms), 3)))
    return atoms


def test_a_force_above_max_force_is_suspect():
    forces = np.zeros((4, 3))
    forces[2, 1] = -376.0
    reason = suspect_forces({"forces": forces}, 50.0)
    assert reason.startswith("suspect: a force of 376.0 eV/Å on atom 2")
    assert suspect_forces({"forces": forces}, None) is None
    assert suspect_forces({"forces": forces * 0.1}, 50.0) is None


def test_every_oracle_applies_the_force_guard():
    # EMT on copper with an atom pushed to 1.43 Å from a neighbour: a real 44 eV/Å force
    copper = bulk("Cu", cubic=True)
    copper.positions[0] += [0.9, 0.7, 0.0]
    result = load_oracle({"type": "emt", "max_force": 10.0}).label(copper)
    assert not result.ok and result.reason.startswith("suspect: a force of")
    assert load_oracle({"type": "emt", "max_force": None}).label(copper).ok


def test_energy_far_from_the_earlier_labels_is_suspect():
    # silicon near -107 eV/atom (CP2K's GTH scale) and isolated oxygen near -430 eV
    si8 = bulk("Si", "diamond", a=5.43, cubic=True)
    rng = np.random.default_rng(0)
    earlier = [_labelled(si8, -8 * 107.0 + rng.normal(0, 0.3)) for _ in range(5)]
    guard = EnergyGuard(earlier, max_deviation=2.0)
    si16 = si8 * (2, 1, 1)
    good = LabelResult(True, _labelled(si16, -16 * 106.5), None, 1.0)
    assert guard.screen(good) is good
    bad = guard.screen(LabelResult(True, _labelled(si16, +2816.0), None, 1.0))
    assert not bad.ok and bad.atoms is None and bad.wall_time == 1.0
    assert bad.reason.startswith("suspect: energy 176.000 eV/atom is +28")
    # an element no earlier label has: no basis to judge, accepted
    sio = si8.copy()
    sio.symbols[0] = "O"
    assert guard.screen(LabelResult(True, _labelled(sio, 1.0e4), None, 1.0)).ok
    # too few earlier labels, or the guard off: nothing is suspect
    assert EnergyGuard(earlier[:2]).check(si16.numbers, 1.0e4) is None
    assert EnergyGuard(earlier, None).check(si16.numbers, 1.0e4) is None


def test_the_guard_is_a_setting_of_every_oracle():
    assert load_oracle({"type": "emt"}).config.max_force == pytest.approx(50.0)
    assert load_oracle({"type": "emt"}).config.max_energy_deviation == pytest.approx(2.0)
