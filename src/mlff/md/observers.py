"""What an MD run records: thermodynamics log, trajectory frames, and the energy series.

Each observer is attached to an ASE :class:`~ase.md.md.MolecularDynamics` object and
called every ``interval`` steps (step 0 included). Units are ASE's: eV, Å, fs, K.
"""

from __future__ import annotations

from typing import IO, Any

import ase.io
import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md import MDLogger

from mlff.errors import SimulationError


class ThermoLogger(MDLogger):
    """ASE's MDLogger, plus the cell volume (Å³) as a last column when asked.

    Columns: time (ps), total, potential and kinetic energy (eV), temperature (K); then
    the six stress components (GPa, Voigt order xx yy zz yz xz xy, ideal-gas term
    included) when ``stress`` is True, and the volume when ``volume`` is True.

    Args:
        dyn: the integrator (for the time column).
        atoms: the simulated atoms.
        logfile: an open text file; it is not closed by the logger.
        stress: log the stress (needs a structure periodic in 3D).
        volume: log the cell volume.
    """

    def __init__(
        self, dyn: Any, atoms: Atoms, logfile: IO[str], stress: bool = False, volume: bool = False
    ) -> None:
        super().__init__(dyn, atoms, logfile, header=False, stress=stress)
        self.volume = volume
        if volume:
            self.hdr += f" {'Volume[Å^3]':>14}"
            self.fmt = self.fmt[:-1] + " %14.4f\n"
        self.logfile.write(self.hdr + "\n")

    def __call__(self) -> None:
        """Write one line for the current state."""
        epot = self._potential_energy()
        ekin = self.atoms.get_kinetic_energy()
        row: tuple[float, ...] = (self.dyn.get_time() / (1000 * units.fs),)
        row += (epot + ekin, epot, ekin, self.atoms.get_temperature())
        if self.stress:
            row += tuple(self._stress() / units.GPa)
        if self.volume:
            row += (self.atoms.get_volume(),)
        self.logfile.write(self.fmt % row)
        self.logfile.flush()


class TrajectoryWriter:
    """Append the current frame, with its energy and forces, to an extxyz file.

    Each frame holds positions (Å), momenta (amu·Å/ASE time), cell, ``energy`` (eV),
    ``forces`` (eV/Å), ``stress`` (eV/Å³, when ``stress`` is True), and in its info
    ``step`` and ``time_fs``.

    Args:
        dyn: the integrator (for step and time).
        atoms: the simulated atoms.
        handle: an open text file; it is not closed by the writer.
        stress: also write the stress.
    """

    def __init__(self, dyn: Any, atoms: Atoms, handle: IO[str], stress: bool = False) -> None:
        self.dyn = dyn
        self.atoms = atoms
        self.handle = handle
        self.stress = stress

    def __call__(self) -> None:
        """Write the current frame."""
        frame = self.atoms.copy()
        frame.constraints = []
        frame.info = {"step": int(self.dyn.nsteps),
                      "time_fs": float(self.dyn.get_time() / units.fs)}
        results = {
            "energy": self.atoms.get_potential_energy(),
            "forces": self.atoms.get_forces(),
        }
        if self.stress:
            results["stress"] = self.atoms.get_stress()
        frame.calc = SinglePointCalculator(frame, **results)
        ase.io.write(self.handle, frame, format="extxyz")
        self.handle.flush()


class EnergyRecorder:
    """Keep the time (ps), total energy (eV) and temperature (K) of every call.

    Raises :class:`SimulationError` as soon as the energy or temperature is not finite,
    so an exploding run stops at the step where it went wrong.

    Args:
        dyn: the integrator.
        atoms: the simulated atoms.
    """

    def __init__(self, dyn: Any, atoms: Atoms) -> None:
        self.dyn = dyn
        self.atoms = atoms
        self.times_ps: list[float] = []
        self.total_energies: list[float] = []
        self.temperatures: list[float] = []

    def __call__(self) -> None:
        """Record the current state; raise if it is not finite."""
        total = self.atoms.get_potential_energy() + self.atoms.get_kinetic_energy()
        temperature = self.atoms.get_temperature()
        if not (np.isfinite(total) and np.isfinite(temperature)):
            raise SimulationError(
                f"the simulation became unstable at step {self.dyn.nsteps}: total energy "
                f"{total} eV, temperature {temperature} K. Reduce the timestep, or check that "
                "the model was trained on structures like this one."
            )
        self.times_ps.append(self.dyn.get_time() / (1000 * units.fs))
        self.total_energies.append(float(total))
        self.temperatures.append(float(temperature))

    def drift_meV_per_atom_per_ps(self) -> float:
        """Slope of a straight-line fit of total energy per atom against time, meV/atom/ps."""
        if len(self.times_ps) < 2:
            return 0.0
        per_atom = np.asarray(self.total_energies) / len(self.atoms)
        slope = np.polyfit(np.asarray(self.times_ps), per_atom, 1)[0]
        return float(slope * 1000.0)
