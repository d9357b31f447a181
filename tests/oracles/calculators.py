"""Real ASE calculators for the oracle tests, importable by path (``type: ase``).

- ``SlowCalculator``: EMT that first records the call (a line with its process id and
  folder in ``counter_file``), writes an input file and sleeps ``delay`` seconds, to count
  oracle calls across processes and check the per-calculation folders;
- ``NaNCalculator``: EMT whose energy is NaN, to test that non-finite labels fail;
- ``CrashCalculator``: kills its own process; ``HelperCalculator``: waits on an external
  program, to test that a timeout kills the whole process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT


class SlowCalculator(EMT):
    """EMT after ``delay`` seconds. Like a code driven through files, it writes an input
    file into its ``directory``; appends ``"<pid> <directory>"`` to ``counter_file``."""

    default_parameters = {**EMT.default_parameters, "delay": 0.0, "counter_file": None}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        counter = self.parameters.get("counter_file")
        if counter:
            with open(counter, "a", encoding="utf-8") as stream:
                stream.write(f"{os.getpid()} {os.path.abspath(self.directory)}\n")
        formula = (atoms if atoms is not None else self.atoms).get_chemical_formula()
        with open(os.path.join(self.directory, "input.txt"), "w", encoding="utf-8") as stream:
            stream.write(f"{formula}\n")
        time.sleep(float(self.parameters.get("delay", 0.0)))
        super().calculate(atoms, properties, system_changes)


class NaNCalculator(EMT):
    """EMT with a NaN energy."""

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.results["energy"] = float(np.nan)


class CrashCalculator(EMT):
    """Kills its own process (as a segmentation fault in a compiled code would)."""

    def calculate(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)


class HelperCalculator(EMT):
    """Waits on a helper program (``sleep``), as a calculator driving an external code
    does; writes ``"<pid> <helper pid>"`` to ``pid_file`` first."""

    default_parameters = {**EMT.default_parameters, "delay": 60.0, "pid_file": None}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        helper = subprocess.Popen(["sleep", str(self.parameters["delay"])])
        with open(self.parameters["pid_file"], "w", encoding="utf-8") as stream:
            stream.write(f"{os.getpid()} {helper.pid}\n")
        helper.wait()
        super().calculate(atoms, properties, system_changes)
