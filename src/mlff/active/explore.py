"""Exploration: MD walkers driven by a committee, sampling frames and their disagreement.

Each walker is one task for an executor (a process pool or Dask worker): it loads the
committee file, runs Langevin NVT (or Berendsen NPT with a pressure) from its start
structure, and every ``sample_every`` steps keeps a copy of the structure with the
committee's disagreement in ``info``: ``max_forces_std`` (eV/Å), ``energy_std_per_atom``
(eV/atom), plus ``walker``, ``step``, ``temperature_K`` (target). The uncertainty
watchdog stops a walker at its first frame above the upper trust level; that frame is
kept (it is where the model broke) and flagged ``stopped``. A committee can also agree on
nonsense far from its data, so a walker whose nearest-neighbour distance drops below
``min_distance`` (Å) is stopped the same way and its frame flagged ``collapsed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.nptberendsen import NPTBerendsen
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.neighborlist import neighbor_list

from mlff.md.watchdog import UncertaintyExceeded, UncertaintyWatchdog


@dataclass
class Walker:
    """One exploration run.

    Attributes:
        index: walker number in the iteration.
        start: start structure (Å).
        temperature_K: thermostat target.
        pressure_GPa: barostat target; ``None`` for NVT.
        seed: velocities and Langevin noise.
    """

    index: int
    start: Atoms
    temperature_K: float
    pressure_GPa: float | None
    seed: int


@dataclass(frozen=True)
class WalkerSettings:
    """What every walker of an iteration shares.

    Attributes:
        steps, timestep_fs, sample_every: MD length, step (fs) and sampling interval.
        upper: the watchdog's trust level on ``max_forces_std``, eV/Å.
        friction_per_fs: Langevin friction, 1/fs.
        threads: torch threads in a walker's task.
        min_distance: stop when two atoms come closer than this, Å; ``None``: no check.
    """

    steps: int
    timestep_fs: float
    sample_every: int
    upper: float
    friction_per_fs: float = 0.01
    threads: int = 1
    min_distance: float | None = None


@dataclass
class WalkerResult:
    """Frames sampled by a walker, and whether the watchdog stopped it (at which step)."""

    index: int
    frames: list[Atoms] = field(default_factory=list)
    stopped_at: int | None = None


def run_walker(model_path: str, walker: Walker, settings: WalkerSettings | None = None,
               **fields: Any) -> WalkerResult:
    """Run one walker (an executor task; arguments are picklable).

    Args:
        model_path: the committee file.
        walker: start structure, thermostat/barostat targets and seed.
        settings: what the walkers share; or give its fields as keywords instead.
    """
    from mlff.calculators.ase import MLFFCalculator

    if settings is not None and fields:
        raise TypeError(f"run_walker: settings given, and {sorted(fields)} besides")
    s = settings if settings is not None else WalkerSettings(**fields)
    steps, timestep_fs, sample_every, upper = s.steps, s.timestep_fs, s.sample_every, s.upper
    friction_per_fs, threads, min_distance = s.friction_per_fs, s.threads, s.min_distance

    atoms = walker.start.copy()
    atoms.calc = MLFFCalculator(model_path, threads=threads)
    rng = np.random.default_rng(walker.seed)
    thermalize_momenta(atoms, temperature_K=walker.temperature_K, rng=rng)
    Stationary(atoms)
    if walker.pressure_GPa is None:
        dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=walker.temperature_K,
                       friction=friction_per_fs / units.fs, fixcm=False, rng=rng)
    else:
        dyn = NPTBerendsen(atoms, timestep_fs * units.fs, temperature_K=walker.temperature_K,
                           pressure_au=walker.pressure_GPa * units.GPa, taut=100 * units.fs,
                           taup=500 * units.fs, compressibility_au=1.0 / (140 * units.GPa))
    result = WalkerResult(walker.index)

    def sample() -> None:
        frame = atoms.copy()
        frame.calc = None
        frame.info = {
            "walker": walker.index, "step": dyn.nsteps, "temperature_K": walker.temperature_K,
            "max_forces_std": float(atoms.calc.get_property("max_forces_std", atoms)),
            "energy_std_per_atom": float(atoms.calc.results["energy_std_per_atom"]),
        }
        result.frames.append(frame)

    def collapse_guard() -> None:
        if min_distance is not None and len(neighbor_list("i", atoms, min_distance)):
            result.frames[-1].info["collapsed"] = True
            raise _Collapsed(dyn.nsteps)

    watchdog = UncertaintyWatchdog(atoms, upper, dyn)
    dyn.attach(sample, interval=sample_every)
    dyn.attach(collapse_guard, interval=sample_every)
    dyn.attach(watchdog, interval=sample_every)
    try:
        dyn.run(steps)
    except (UncertaintyExceeded, _Collapsed) as stop:
        result.stopped_at = stop.step
        result.frames[-1].info["stopped"] = True
    return result


class _Collapsed(Exception):
    def __init__(self, step: int) -> None:
        super().__init__(f"step {step}: atoms closer than the minimum distance")
        self.step = step
