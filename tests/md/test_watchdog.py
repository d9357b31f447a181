import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.verlet import VelocityVerlet

from mlff import MLFFCalculator
from mlff.errors import SimulationError
from mlff.md.watchdog import UncertaintyExceeded, UncertaintyWatchdog
from mlff.uq import Committee
from tests import helpers


def _atoms():
    atoms = bulk("Cu", cubic=True).repeat(2)
    atoms.rattle(0.05, seed=0)
    atoms.calc = MLFFCalculator(Committee([helpers.build_potential("painn", seed=s) for s in (0, 1)]))
    return atoms


def test_watchdog_stops_md_above_the_level_and_names_the_step():
    atoms = _atoms()
    dyn = VelocityVerlet(atoms, timestep=1.0)
    watchdog = UncertaintyWatchdog(atoms, threshold=1e-9, dyn=dyn)
    dyn.attach(watchdog, interval=2)
    with pytest.raises(UncertaintyExceeded, match="step 0") as stop:
        dyn.run(10)
    assert stop.value.value > 1e-9


def test_watchdog_lets_a_trusted_run_finish():
    atoms = _atoms()
    dyn = VelocityVerlet(atoms, timestep=1.0)
    watchdog = UncertaintyWatchdog(atoms, threshold=1e3, dyn=dyn)
    dyn.attach(watchdog, interval=2)
    dyn.run(6)
    assert len(watchdog.history) == 4


def test_watchdog_needs_a_committee():
    atoms = bulk("Cu")
    atoms.calc = EMT()
    with pytest.raises(SimulationError, match="committee"):
        UncertaintyWatchdog(atoms, 0.1)
