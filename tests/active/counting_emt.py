"""A real EMT calculator that is slow on purpose and logs every finished calculation
(for the kill-and-resume test of `mlff learn`, where it is loaded by import path)."""

import fcntl
import time

from ase.calculators.emt import EMT

from mlff.active.store import structure_key


class CountingEMT(EMT):
    def __init__(self, log: str, delay: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.log, self.delay = log, delay

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        time.sleep(self.delay)
        super().calculate(atoms, properties, system_changes or ["positions"])
        with open(self.log, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(structure_key(self.atoms) + "\n")
