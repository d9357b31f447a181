"""Molecular dynamics with ASE's integrators: NVE, NVT (Langevin or Bussi) and NPT (MTK).

Settings are given in fs, K and bar and converted to ASE's internal units here, at the
boundary. A run writes ``trajectory.extxyz`` and ``thermo.log`` into its output folder
and returns a summary.

Examples:
    >>> from ase.build import molecule                                  # doctest: +SKIP
    >>> from mlff import MLFFCalculator                                 # doctest: +SKIP
    >>> summary = run_md(MLFFCalculator("model.mlff"), molecule("CH3CH2OH"),
    ...                  steps=1000, timestep_fs=0.5, temperature_K=300,
    ...                  out_dir="md-nve")                              # doctest: +SKIP
    >>> summary["energy_drift_meV_per_atom_per_ps"]                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Literal, TypedDict

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator
from ase.md.bussi import Bussi
from ase.md.langevin import Langevin
from ase.md.md import MolecularDynamics
from ase.md.nose_hoover_chain import IsotropicMTKNPT
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from mlff.errors import DataError, SimulationError
from mlff.md.observers import EnergyRecorder, ThermoLogger, TrajectoryWriter

Ensemble = Literal["nve", "nvt", "npt"]
Thermostat = Literal["langevin", "bussi"]
ENSEMBLES: tuple[str, ...] = ("nve", "nvt", "npt")
THERMOSTATS: tuple[str, ...] = ("langevin", "bussi")
TRAJECTORY_NAME = "trajectory.extxyz"
THERMO_NAME = "thermo.log"


class MDSummary(TypedDict):
    """What :func:`run_md` returns (plain JSON data).

    Attributes:
        ensemble: ``"nve"``, ``"nvt"`` or ``"npt"``.
        thermostat: ``"langevin"``/``"bussi"`` for NVT, ``"mtk"`` for NPT, else ``None``.
        steps: number of steps run.
        timestep_fs: integration timestep, fs.
        simulated_time_ps: ``steps * timestep``, ps.
        num_atoms: number of atoms.
        target_temperature_K: thermostat target (initial temperature for NVE), K.
        initial_temperature_K: temperature after the initial velocities were drawn, K.
        final_temperature_K: temperature at the last step, K.
        mean_temperature_K: mean over every step (step 0 included), K.
        final_potential_energy_eV: potential energy at the last step, eV.
        energy_drift_meV_per_atom_per_ps: slope of a linear fit of the total energy per
            atom against time (NVE only, else ``None``), meV/atom/ps.
        initial_volume_A3 / final_volume_A3: cell volume, Å³ (NPT only, else ``None``).
        wall_time_s: wall-clock time of the integration, s.
        ms_per_step: wall-clock time per step, ms.
        trajectory: path of the extxyz trajectory.
        thermo_log: path of the thermodynamics log.
    """

    ensemble: str
    thermostat: str | None
    steps: int
    timestep_fs: float
    simulated_time_ps: float
    num_atoms: int
    target_temperature_K: float
    initial_temperature_K: float
    final_temperature_K: float
    mean_temperature_K: float
    final_potential_energy_eV: float
    energy_drift_meV_per_atom_per_ps: float | None
    initial_volume_A3: float | None
    final_volume_A3: float | None
    wall_time_s: float
    ms_per_step: float
    trajectory: str
    thermo_log: str


def run_md(
    calculator: BaseCalculator,
    atoms: Atoms,
    steps: int,
    timestep_fs: float,
    temperature_K: float,
    *,
    out_dir: str | Path,
    ensemble: Ensemble = "nve",
    thermostat: Thermostat = "langevin",
    pressure_bar: float = 1.0,
    friction_per_fs: float = 0.01,
    thermostat_tau_fs: float = 100.0,
    barostat_tau_fs: float = 1000.0,
    initial_temperature_K: float | None = None,
    log_interval: int = 10,
    seed: int = 0,
) -> MDSummary:
    """Run molecular dynamics of ``atoms`` with ``calculator`` and write its outputs.

    ``atoms`` is simulated in place (its positions, momenta and, for NPT, cell change)
    with ``calculator`` attached. Initial velocities are drawn from a Maxwell-Boltzmann
    distribution at ``initial_temperature_K`` with a generator seeded by ``seed``, and the
    total momentum is set to zero.

    Args:
        calculator: any ASE calculator (an :class:`~mlff.calculators.MLFFCalculator`);
            for NPT it must give the stress.
        atoms: the starting structure (positions Å, cell rows Å).
        steps: number of integration steps, > 0.
        timestep_fs: integration timestep, fs, > 0 (0.5 fs for molecules with H, 1-2 fs
            for heavier atoms).
        temperature_K: thermostat target, K, >= 0 (> 0 for NPT); for NVE only the
            temperature of the initial velocities.
        out_dir: folder for ``trajectory.extxyz`` and ``thermo.log`` (created; existing
            files are overwritten).
        ensemble: ``"nve"`` (velocity Verlet), ``"nvt"`` (``thermostat``) or ``"npt"``
            (isotropic Martyna-Tobias-Klein barostat with Nose-Hoover chains; needs a
            structure periodic in all three directions).
        thermostat: for NVT, ``"langevin"`` (friction ``friction_per_fs``) or
            ``"bussi"`` (stochastic velocity rescaling, time constant
            ``thermostat_tau_fs``).
        pressure_bar: NPT target pressure, bar.
        friction_per_fs: Langevin friction, 1/fs (0.01 fs⁻¹ = 10 ps⁻¹).
        thermostat_tau_fs: Bussi and NPT thermostat time constant, fs (about 100 steps).
        barostat_tau_fs: NPT barostat time constant, fs (about 1000 steps).
        initial_temperature_K: temperature of the initial velocities, K; default
            ``temperature_K``.
        log_interval: write a log line and a trajectory frame every this many steps.
        seed: seed of the initial velocities and of the stochastic thermostats.

    Returns:
        The run's :class:`MDSummary`.

    Raises:
        SimulationError: a setting is invalid, the ensemble does not fit the structure,
            or the run became unstable (non-finite energy or positions).
    """
    if initial_temperature_K is None:
        initial_temperature_K = temperature_K
    _check_settings(steps, timestep_fs, temperature_K, initial_temperature_K, ensemble, thermostat,
                    pressure_bar, friction_per_fs, thermostat_tau_fs, barostat_tau_fs, log_interval)
    _check_structure(atoms, ensemble)
    rng = np.random.default_rng(seed)
    atoms.calc = calculator
    set_initial_velocities(atoms, initial_temperature_K, rng)
    if ensemble == "nvt" and thermostat == "bussi" and atoms.get_kinetic_energy() == 0:
        raise SimulationError(
            "the Bussi thermostat rescales velocities and cannot start from rest (0 K, or a "
            "single atom): give an initial temperature above 0 K, or use the Langevin thermostat."
        )
    dyn = make_integrator(atoms, ensemble, thermostat, timestep_fs, temperature_K, pressure_bar,
                          friction_per_fs, thermostat_tau_fs, barostat_tau_fs, rng)
    initial_volume = float(atoms.get_volume()) if ensemble == "npt" else None

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trajectory_path, thermo_path = out_dir / TRAJECTORY_NAME, out_dir / THERMO_NAME
    npt = ensemble == "npt"
    with contextlib.ExitStack() as stack:
        thermo_file = stack.enter_context(open(thermo_path, "w", encoding="utf-8"))
        trajectory_file = stack.enter_context(open(trajectory_path, "w", encoding="utf-8"))
        recorder = EnergyRecorder(dyn, atoms)
        dyn.attach(recorder, interval=1)
        thermo = ThermoLogger(dyn, atoms, thermo_file, stress=npt, volume=npt)
        dyn.attach(thermo, interval=log_interval)
        writer = TrajectoryWriter(dyn, atoms, trajectory_file, stress=npt)
        dyn.attach(writer, interval=log_interval)
        start = time.perf_counter()
        _integrate(dyn, steps)
        wall = time.perf_counter() - start

    return MDSummary(
        ensemble=ensemble,
        thermostat={"nvt": thermostat, "npt": "mtk"}.get(ensemble),
        steps=steps,
        timestep_fs=float(timestep_fs),
        simulated_time_ps=steps * timestep_fs / 1000.0,
        num_atoms=len(atoms),
        target_temperature_K=float(temperature_K),
        initial_temperature_K=recorder.temperatures[0],
        final_temperature_K=recorder.temperatures[-1],
        mean_temperature_K=float(np.mean(recorder.temperatures)),
        final_potential_energy_eV=float(atoms.get_potential_energy()),
        energy_drift_meV_per_atom_per_ps=(
            recorder.drift_meV_per_atom_per_ps() if ensemble == "nve" else None
        ),
        initial_volume_A3=initial_volume,
        final_volume_A3=float(atoms.get_volume()) if npt else None,
        wall_time_s=wall,
        ms_per_step=1000.0 * wall / steps,
        trajectory=str(trajectory_path),
        thermo_log=str(thermo_path),
    )


def _check_settings(
    steps: int, timestep_fs: float, temperature_K: float, initial_temperature_K: float,
    ensemble: str, thermostat: str, pressure_bar: float, friction_per_fs: float,
    thermostat_tau_fs: float, barostat_tau_fs: float, log_interval: int,
) -> None:
    """Raise :class:`SimulationError` naming the first invalid setting."""
    if ensemble not in ENSEMBLES:
        raise SimulationError(
            f"ensemble {ensemble!r} is unknown; use one of {', '.join(ENSEMBLES)}."
        )
    if thermostat not in THERMOSTATS:
        raise SimulationError(
            f"thermostat {thermostat!r} is unknown; use one of {', '.join(THERMOSTATS)}."
        )
    for name, value in (("steps", steps), ("log_interval", log_interval)):
        if not _is_positive_int(value):
            raise SimulationError(f"{name} = {value!r}; give a whole number of steps > 0.")
    _require(timestep_fs, "timestep", "fs", positive=True)
    _require(temperature_K, "temperature", "K", positive=ensemble == "npt")
    _require(initial_temperature_K, "initial temperature", "K", positive=False)
    if ensemble == "nvt":
        if thermostat == "langevin":
            _require(friction_per_fs, "Langevin friction", "1/fs", positive=True)
        else:
            _require(thermostat_tau_fs, "thermostat time constant", "fs", positive=True)
    if ensemble == "npt":
        _require(pressure_bar, "pressure", "bar", positive=None)
        _require(thermostat_tau_fs, "thermostat time constant", "fs", positive=True)
        _require(barostat_tau_fs, "barostat time constant", "fs", positive=True)


def _is_positive_int(value: object) -> bool:
    """Whether ``value`` is an integer (not a bool) > 0."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def _require(value: float, name: str, unit: str, positive: bool | None) -> None:
    """Check ``value`` is finite and > 0 (``positive``), >= 0 (False) or anything (None)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SimulationError(f"{name} = {value!r} is not a number ({unit}).") from None
    if not math.isfinite(number):
        raise SimulationError(f"{name} = {value!r} {unit}; give a finite number.")
    if positive is True and number <= 0:
        raise SimulationError(f"{name} = {value!r} {unit}; it must be > 0.")
    if positive is False and number < 0:
        raise SimulationError(f"{name} = {value!r} {unit}; it must be >= 0.")


def _check_structure(atoms: Atoms, ensemble: str) -> None:
    """Raise :class:`SimulationError` if ``atoms`` cannot be run in ``ensemble``."""
    if len(atoms) == 0:
        raise SimulationError("the structure has no atoms.")
    if not np.isfinite(atoms.positions).all():
        raise SimulationError("the structure's positions contain NaN or inf.")
    if ensemble != "npt":
        return
    if not atoms.pbc.all():
        raise SimulationError(
            f"NPT needs a structure periodic in all three directions, but pbc is "
            f"{atoms.pbc.tolist()} ({atoms.get_chemical_formula()}): a volume and a pressure "
            "are undefined for a molecule or a slab. Run it in NVT, or put it in a periodic cell."
        )
    if not np.isfinite(atoms.cell.array).all() or atoms.cell.volume <= 1e-6:
        raise SimulationError(
            f"NPT needs a cell with a positive volume; this one has volume {atoms.cell.volume} Å³."
        )
    if atoms.constraints:
        raise SimulationError(
            "NPT (MTK) does not support constraints; remove them from the structure."
        )


def set_initial_velocities(atoms: Atoms, temperature_K: float, rng: np.random.Generator) -> None:
    """Draw Maxwell-Boltzmann momenta at ``temperature_K`` (K) and zero the total momentum.

    With a single atom or at 0 K the atoms start at rest.
    """
    if temperature_K == 0 or len(atoms) == 1:
        atoms.set_momenta(np.zeros((len(atoms), 3)))
        return
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms, preserve_temperature=True)


def make_integrator(
    atoms: Atoms,
    ensemble: str,
    thermostat: str,
    timestep_fs: float,
    temperature_K: float,
    pressure_bar: float,
    friction_per_fs: float,
    thermostat_tau_fs: float,
    barostat_tau_fs: float,
    rng: np.random.Generator,
) -> MolecularDynamics:
    """Build the ASE integrator for ``ensemble`` (arguments as in :func:`run_md`)."""
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        return VelocityVerlet(atoms, timestep=dt)
    if ensemble == "nvt" and thermostat == "langevin":
        return Langevin(atoms, timestep=dt, temperature_K=temperature_K,
                        friction=friction_per_fs / units.fs, fixcm=False, rng=rng)
    if ensemble == "nvt":
        return Bussi(atoms, timestep=dt, temperature_K=temperature_K,
                     taut=thermostat_tau_fs * units.fs, rng=rng)
    return IsotropicMTKNPT(atoms, timestep=dt, temperature_K=temperature_K,
                           pressure_au=pressure_bar * units.bar,
                           tdamp=thermostat_tau_fs * units.fs, pdamp=barostat_tau_fs * units.fs)


def _integrate(dyn: MolecularDynamics, steps: int) -> None:
    """Run ``steps`` steps; a calculator's complaint about the state becomes a SimulationError."""
    try:
        dyn.run(steps)
    except DataError as exc:  # e.g. NaN positions after the run blew up
        raise SimulationError(
            f"the simulation became unstable at step {dyn.nsteps}: {exc} Reduce the timestep, "
            "or check that the model was trained on structures like this one."
        ) from None
