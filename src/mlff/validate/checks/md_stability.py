"""Check 3, MD stability: NVT temperature control, then NVE energy drift and fluctuation,
and the minimum interatomic distance over time (which catches a collapsing structure).

The run starts from the given structure with Maxwell-Boltzmann velocities at the target
temperature, is thermostatted (NVT, ASE's Langevin or Bussi through
:func:`mlff.md.run.make_integrator`) for ``nvt_time_ps``, then continues from that state
without a thermostat (NVE, velocity Verlet) for ``time_ps``.

Figures of merit:
- NVE drift: slope of a straight-line fit of the total energy per atom against time,
  meV/atom/ps; fluctuation: standard deviation about that line, meV/atom.
- NVT: mean and standard deviation of the temperature over the second half of the NVT
  run, K, beside the canonical standard deviation T·sqrt(2/(3N)).
- Minimum distance: the shortest interatomic distance at every sampled step, Å; the run
  stops, and is reported as collapsed, when it falls below ``collapse_fraction`` times
  its initial value, or when an energy is not finite.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import BaseCalculator

from mlff.errors import ConfigError, DataError, SimulationError
from mlff.md.run import THERMOSTATS, make_integrator, set_initial_velocities
from mlff.validate.figures import FigureSink, new_figure
from mlff.validate.geometry import min_distance
from mlff.validate.result import CheckResult, Headline, Table, bound, fmt

NAME = "md"
TITLE = "MD stability"


@dataclass
class MDOptions:
    """Settings of the MD stability check.

    Attributes:
        timestep_fs: integration timestep, fs.
        time_ps: length of the NVE run, ps.
        nvt_time_ps: length of the NVT run before it (equilibration and temperature
            control), ps.
        temperature_K: thermostat target and temperature of the initial velocities, K.
        thermostat: ``"langevin"`` or ``"bussi"``.
        friction_per_fs: Langevin friction, 1/fs.
        thermostat_tau_fs: Bussi time constant, fs.
        sample_interval: steps between samples of the temperature and minimum distance
            (the NVE energy is recorded every step).
        collapse_fraction: stop when the minimum distance falls below this fraction of
            its initial value.
        max_drift_meV_per_atom_per_ps: accepted |NVE drift|, meV/atom/ps.
        max_temperature_deviation: accepted |mean T - target| / target in NVT.
        seed: seed of the initial velocities and the thermostat noise.
    """

    timestep_fs: float = 1.0
    time_ps: float = 10.0
    nvt_time_ps: float = 2.0
    temperature_K: float = 300.0
    thermostat: str = "langevin"
    friction_per_fs: float = 0.01
    thermostat_tau_fs: float = 100.0
    sample_interval: int = 10
    collapse_fraction: float = 0.6
    max_drift_meV_per_atom_per_ps: float = 1.0
    max_temperature_deviation: float = 0.1
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid setting."""
        for name in ("timestep_fs", "time_ps", "nvt_time_ps", "temperature_K",
                     "friction_per_fs", "thermostat_tau_fs"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"MD check: {name} = {value!r}; give a number > 0.")
        if self.thermostat not in THERMOSTATS:
            raise ConfigError(f"MD check: thermostat {self.thermostat!r} is unknown; use one of "
                              f"{', '.join(THERMOSTATS)}.")
        if not (isinstance(self.sample_interval, int) and self.sample_interval > 0):
            raise ConfigError(f"MD check: sample_interval = {self.sample_interval!r}; give a "
                              "whole number of steps > 0.")
        if not 0 < self.collapse_fraction < 1:
            raise ConfigError(f"MD check: collapse_fraction = {self.collapse_fraction!r}; it "
                              "must lie between 0 and 1.")

    def steps(self, length_ps: float) -> int:
        """Number of steps of a run of ``length_ps`` (at least 2)."""
        return max(2, round(1000.0 * length_ps / self.timestep_fs))


class _Stop(Exception):
    """Raised by the recorder to end a run that collapsed or exploded."""


@dataclass
class Series:
    """What one run recorded (time ps, energies eV, temperature K, distances Å)."""

    time_ps: list[float] = field(default_factory=list)
    potential: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    temperature: list[float] = field(default_factory=list)
    sample_time_ps: list[float] = field(default_factory=list)
    sample_temperature: list[float] = field(default_factory=list)
    min_distance: list[float] = field(default_factory=list)
    stop_reason: str = ""


class _Recorder:
    """Records energies every call and samples every ``interval`` calls; raises _Stop."""

    def __init__(self, dyn: Any, atoms: Atoms, series: Series, interval: int, floor: float):
        self.dyn, self.atoms, self.series = dyn, atoms, series
        self.interval, self.floor, self.calls = interval, floor, 0

    def __call__(self) -> None:
        epot = float(self.atoms.get_potential_energy())
        ekin = float(self.atoms.get_kinetic_energy())
        t = self.dyn.get_time() / (1000.0 * units.fs)
        temperature = float(self.atoms.get_temperature())
        if not (math.isfinite(epot) and math.isfinite(ekin)):
            self.series.stop_reason = f"the energy is not finite at {t:.4g} ps"
            raise _Stop
        s = self.series
        s.time_ps.append(t)
        s.potential.append(epot)
        s.total.append(epot + ekin)
        s.temperature.append(temperature)
        if self.calls % self.interval == 0:
            distance = min_distance(self.atoms)
            s.sample_time_ps.append(t)
            s.sample_temperature.append(temperature)
            s.min_distance.append(distance)
            if distance < self.floor:
                s.stop_reason = (f"the structure collapsed at {t:.4g} ps: two atoms came "
                                 f"within {distance:.3f} Å (threshold {self.floor:.3f} Å)")
                raise _Stop
        self.calls += 1


def run_segment(atoms: Atoms, ensemble: str, steps: int, options: MDOptions,
                rng: np.random.Generator, floor: float) -> Series:
    """Run ``steps`` steps of ``ensemble`` from the current state of ``atoms``; a collapse
    or a non-finite energy ends the run early, with ``stop_reason`` set."""
    dyn = make_integrator(atoms, ensemble, options.thermostat, options.timestep_fs,
                          options.temperature_K, 1.0, options.friction_per_fs,
                          options.thermostat_tau_fs, 1000.0, rng)
    series = Series()
    recorder = _Recorder(dyn, atoms, series, options.sample_interval, floor)
    dyn.attach(recorder, interval=1)
    try:
        dyn.run(steps)
    except _Stop:
        pass
    except (DataError, SimulationError) as exc:  # e.g. NaN positions reached the model
        series.stop_reason = f"the run failed at step {dyn.nsteps}: {exc}"
    return series


def run(model: BaseCalculator, structure: Atoms, out_dir, options: MDOptions | None = None
        ) -> CheckResult:
    """NVT then NVE molecular dynamics of ``structure`` with ``model``.

    Args:
        model: the model's ASE calculator.
        structure: the starting structure (not modified); use a cell of about 100 atoms
            or more for meaningful temperatures.
        out_dir: folder for the figure.
        options: settings; defaults of :class:`MDOptions`.

    Raises:
        ConfigError: an option is invalid.
    """
    options = options or MDOptions()
    options.check()
    if len(structure) < 2:
        raise ConfigError("MD check: the structure has fewer than 2 atoms; give a larger one.")
    atoms = structure.copy()
    atoms.calc = model
    initial_distance = min_distance(atoms)
    floor = options.collapse_fraction * initial_distance if math.isfinite(initial_distance) else 0
    rng = np.random.default_rng(options.seed)
    set_initial_velocities(atoms, options.temperature_K, rng)
    start = time.perf_counter()
    nvt = run_segment(atoms, "nvt", options.steps(options.nvt_time_ps), options, rng, floor)
    nve = Series(stop_reason="not run: the NVT run did not finish")
    if not nvt.stop_reason:
        nve = run_segment(atoms, "nve", options.steps(options.time_ps), options, rng, floor)
    wall = time.perf_counter() - start
    summary = _summary(atoms, nvt, nve, options, initial_distance, wall)
    result = CheckResult(NAME, TITLE, summary=summary)
    result.headlines = _headlines(summary, options)
    for label, series in (("NVT", nvt), ("NVE", nve)):
        if series.stop_reason:
            result.notes.append(f"{label}: {series.stop_reason}.")
    result.notes.append(
        f"{len(atoms)} atoms ({atoms.get_chemical_formula()}), timestep "
        f"{options.timestep_fs:g} fs, {options.temperature_K:g} K: NVT "
        f"({options.thermostat}) for {options.nvt_time_ps:g} ps, then NVE for "
        f"{options.time_ps:g} ps; {fmt(summary['ms_per_step'])} ms per step.")
    result.tables.append(_table(summary))
    result.figures.append(_figure(nvt, nve, summary, options, FigureSink(out_dir, NAME)))
    return result


_ROWS = (  # label, summary key, unit
    ("NVT mean temperature (second half)", "nvt_mean_temperature_K", "K"),
    ("NVT temperature standard deviation", "nvt_std_temperature_K", "K"),
    ("canonical standard deviation T·sqrt(2/(3N))", "canonical_std_temperature_K", "K"),
    ("NVE energy drift", "nve_drift_meV_per_atom_per_ps", "meV/atom/ps"),
    ("NVE total-energy fluctuation about the fit", "nve_fluctuation_meV_per_atom", "meV/atom"),
    ("NVE potential-energy standard deviation", "nve_potential_std_meV_per_atom", "meV/atom"),
    ("NVE mean temperature", "nve_mean_temperature_K", "K"),
    ("initial shortest distance", "initial_min_distance_A", "Å"),
    ("shortest distance over the run", "min_distance_A", "Å"),
    ("simulated NVT / NVE time", None, "ps"),
)


def _table(summary: dict[str, Any]) -> Table:
    rows = []
    for label, key, unit in _ROWS:
        if key is None:
            value = f"{fmt(summary['nvt_time_ps'])} / {fmt(summary['nve_time_ps'])}"
        elif key in summary:
            value = fmt(summary[key])
        else:
            continue
        rows.append([label, value, unit])
    return Table("Run summary", ["quantity", "value", "unit"], rows)


def _summary(atoms: Atoms, nvt: Series, nve: Series, options: MDOptions,
             initial_distance: float, wall: float) -> dict[str, Any]:
    n = len(atoms)
    steps = len(nvt.time_ps) + len(nve.time_ps)
    out: dict[str, Any] = {
        "num_atoms": n, "timestep_fs": options.timestep_fs,
        "temperature_K": options.temperature_K,
        "nvt_time_ps": nvt.time_ps[-1] if nvt.time_ps else 0.0,
        "nve_time_ps": nve.time_ps[-1] if nve.time_ps else 0.0,
        "stable": not (nvt.stop_reason or nve.stop_reason),
        "stop_reason": nvt.stop_reason or nve.stop_reason,
        "initial_min_distance_A": initial_distance,
        "min_distance_A": float(min(nvt.min_distance + nve.min_distance, default=math.nan)),
        "ms_per_step": 1000.0 * wall / max(steps, 1),
    }
    half = nvt.sample_temperature[len(nvt.sample_temperature) // 2:]
    if half:
        out["nvt_mean_temperature_K"] = float(np.mean(half))
        out["nvt_std_temperature_K"] = float(np.std(half))
        out["canonical_std_temperature_K"] = options.temperature_K * math.sqrt(2.0 / (3 * n))
    if len(nve.time_ps) >= 3:
        t = np.asarray(nve.time_ps)
        per_atom = 1000.0 * np.asarray(nve.total) / n  # meV/atom
        slope, intercept = np.polyfit(t, per_atom, 1)
        residual = per_atom - (slope * t + intercept)
        out["nve_drift_meV_per_atom_per_ps"] = float(slope)
        out["nve_fluctuation_meV_per_atom"] = float(np.std(residual))
        out["nve_potential_std_meV_per_atom"] = float(np.std(1000.0 * np.asarray(nve.potential)
                                                             / n))
        out["nve_mean_temperature_K"] = float(np.mean(nve.temperature))
    return out


def _headlines(summary: dict[str, Any], options: MDOptions) -> list[Headline]:
    out = []
    if "nve_drift_meV_per_atom_per_ps" in summary:
        drift = bound("NVE energy drift", "meV/atom/ps", summary["nve_drift_meV_per_atom_per_ps"],
                      options.max_drift_meV_per_atom_per_ps)
        drift.passed = bool(drift.passed and summary["stable"])
        out.append(drift)
        out.append(Headline("NVE energy fluctuation", "meV/atom",
                            summary["nve_fluctuation_meV_per_atom"]))
    if "nvt_mean_temperature_K" in summary:
        target = options.temperature_K
        deviation = 100.0 * (summary["nvt_mean_temperature_K"] - target) / target
        out.append(Headline(
            "NVT mean temperature", "K", summary["nvt_mean_temperature_K"], None, deviation,
            "%", 100.0 * options.max_temperature_deviation,
            f"|T̄ − {target:g} K| ≤ {100.0 * options.max_temperature_deviation:g} %",
            abs(deviation) <= 100.0 * options.max_temperature_deviation))
    floor = options.collapse_fraction * summary["initial_min_distance_A"]
    out.append(Headline(
        "minimum interatomic distance", "Å", summary["min_distance_A"], None, None, "", floor,
        f"≥ {options.collapse_fraction:g} × initial ({floor:.3g} Å)",
        bool(summary["stable"] and summary["min_distance_A"] >= floor)))
    return out


def _figure(nvt: Series, nve: Series, summary: dict[str, Any], options: MDOptions,
            sink: FigureSink):
    figure, (energy_ax, temperature_ax, distance_ax) = new_figure(3, 1, width=4.4, height=3.4)
    n = summary["num_atoms"]
    data: dict[str, Any] = {"num_atoms": n}
    if nve.time_ps:
        t = np.asarray(nve.time_ps)
        per_atom = 1000.0 * (np.asarray(nve.total) - nve.total[0]) / n
        stride = max(1, len(t) // 4000)  # keep the JSON small; the fit used every step
        energy_ax.plot(t[::stride], per_atom[::stride], lw=0.8, label="total energy")
        if "nve_drift_meV_per_atom_per_ps" in summary:
            drift = summary["nve_drift_meV_per_atom_per_ps"]
            line = drift * t + (per_atom - drift * t).mean()
            energy_ax.plot(t, line, color="tab:red", lw=1.0,
                           label=f"drift {drift:.3g} meV/atom/ps")
        energy_ax.legend(fontsize="small")
        data["nve"] = {"time_ps": t[::stride], "total_energy_meV_per_atom_from_start":
                       per_atom[::stride]}
    energy_ax.set_xlabel("NVE time (ps)")
    energy_ax.set_ylabel("E_total − E_total(0) (meV/atom)")
    energy_ax.set_title("NVE energy conservation", fontsize="medium")
    target = options.temperature_K
    temperature_ax.plot(nvt.sample_time_ps, nvt.sample_temperature, lw=0.8, label="NVT")
    temperature_ax.axhline(target, color="black", lw=0.8, label=f"target {target:g} K")
    if "canonical_std_temperature_K" in summary:
        sigma = summary["canonical_std_temperature_K"]
        temperature_ax.axhspan(target - sigma, target + sigma, color="gray", alpha=0.2,
                               label="canonical ±σ")
    temperature_ax.set_xlabel("NVT time (ps)")
    temperature_ax.set_ylabel("temperature (K)")
    temperature_ax.set_title("NVT temperature control", fontsize="medium")
    temperature_ax.legend(fontsize="small")
    data["nvt"] = {"time_ps": nvt.sample_time_ps, "temperature_K": nvt.sample_temperature,
                   "target_K": target}
    offset = nvt.time_ps[-1] if nvt.time_ps else 0.0
    nve_time = [offset + t for t in nve.sample_time_ps]
    distance_ax.plot(nvt.sample_time_ps, nvt.min_distance, lw=0.8, label="NVT")
    distance_ax.plot(nve_time, nve.min_distance, lw=0.8, label="NVE")
    floor = options.collapse_fraction * summary["initial_min_distance_A"]
    distance_ax.axhline(floor, color="tab:red", lw=0.8, ls="--", label="collapse threshold")
    distance_ax.set_xlabel("time (ps)")
    distance_ax.set_ylabel("minimum distance (Å)")
    distance_ax.set_title("shortest interatomic distance", fontsize="medium")
    distance_ax.legend(fontsize="small")
    data["min_distance"] = {"nvt_time_ps": nvt.sample_time_ps, "nvt_A": nvt.min_distance,
                            "nve_time_ps": nve_time, "nve_A": nve.min_distance,
                            "threshold_A": floor}
    return sink.save(figure, "stability", "Left: NVE total energy per atom relative to its "
                     "start, with the fitted drift. Middle: NVT temperature against its target "
                     "(band: canonical standard deviation). Right: the shortest interatomic "
                     "distance over the NVT then NVE run (a drop to the dashed line is a "
                     "collapse).", data)
