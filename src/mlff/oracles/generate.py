"""Reference (ab initio) molecular dynamics: MD with the oracle's own calculator.

Every ``every``-th step is kept with the energy, forces (and stress, for structures
periodic in 3D) the oracle computed at that step, so the frames are labelled for free
and, for ``every`` larger than the correlation time, decorrelated. Frames are handed to
``on_frame`` as they are made, so a long run can write each one at once.

A run killed at any moment resumes from its last kept frame (``resume``): each frame
carries its momenta and MD step, and the thermostat's random numbers after step ``n``
are drawn from a generator seeded with ``(seed, n)``, so a resumed run continues exactly
as the uninterrupted run would have (up to the code's own SCF reproducibility).

Examples:
    >>> from ase.build import bulk                                       # doctest: +SKIP
    >>> frames = run_reference_md(bulk("Cu", cubic=True) * 2, load_oracle({"type": "emt"}),
    ...                           temperature_K=600, steps=200, timestep_fs=2, every=20)
    >>> len(frames)                                                      # doctest: +SKIP
    10
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.md import MolecularDynamics
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from mlff.errors import OracleError, SimulationError
from mlff.oracles.compute import describe_exception
from mlff.oracles.oracle import Oracle

Ensemble = Literal["nvt", "nve"]
ENSEMBLES: tuple[str, ...] = ("nvt", "nve")


def _frame(atoms: Atoms, step: int, time_fs: float, wall_time: float, stress: bool) -> Atoms:
    """A copy of ``atoms`` with the calculator's current labels and the MD step in info."""
    results = {"energy": float(atoms.get_potential_energy()),
               "forces": np.array(atoms.get_forces(), dtype=float)}
    if stress:
        results["stress"] = np.array(atoms.get_stress(voigt=True), dtype=float)
    for name, value in results.items():
        if not np.isfinite(value).all():
            raise OracleError(f"reference MD step {step}: the oracle returned a non-finite "
                              f"{name} (NaN or inf); the structure may have blown up: "
                              "lower --timestep or --temperature.")
    frame = atoms.copy()  # with the momenta, to resume from
    frame.calc = SinglePointCalculator(frame, **results)
    frame.info.update(md_step=step, md_time_fs=time_fs, wall_time=wall_time)
    return frame


def _check_resume(frame: Atoms, atoms: Atoms, steps: int) -> int:
    """The MD step of ``frame`` to resume from (checked against the run's settings)."""
    step = frame.info.get("md_step")
    if not isinstance(step, (int, np.integer)) or step < 1:
        raise SimulationError("reference MD: the frame to resume from has no md_step; it was "
                              "not written by a reference MD run.")
    if "momenta" not in frame.arrays:
        raise SimulationError(f"reference MD: the frame of step {step} to resume from has no "
                              "momenta; start the run again from the beginning.")
    if len(frame) != len(atoms) or (frame.numbers != atoms.numbers).any():
        raise SimulationError(f"reference MD: the frame of step {step} to resume from has other "
                              "atoms than the start structure; write to a new output.")
    if step > steps:
        raise SimulationError(f"reference MD: the output already reaches step {step}, beyond "
                              f"--steps {steps}.")
    return int(step)


def run_reference_md(
    atoms: Atoms,
    oracle: Oracle,
    *,
    temperature_K: float,
    steps: int,
    timestep_fs: float,
    every: int,
    seed: int = 0,
    ensemble: Ensemble = "nvt",
    friction_per_fs: float = 0.01,
    on_frame: Callable[[Atoms], None] | None = None,
    resume: Atoms | None = None,
) -> list[Atoms]:
    """Run MD with ``oracle``'s calculator and keep every ``every``-th step.

    Initial velocities are Maxwell-Boltzmann at ``temperature_K`` (seeded) with zero
    total momentum. ``nvt`` integrates with ASE's Langevin thermostat, ``nve`` with
    velocity Verlet. The oracle's ``timeout`` does not apply (the calculator runs here).

    Args:
        atoms: the starting structure (Å); it is not modified.
        oracle: the reference method.
        temperature_K: initial and thermostat temperature, K.
        steps: number of MD steps.
        timestep_fs: timestep, fs.
        every: keep steps ``every, 2*every, ...`` (the start structure is not kept), so
            ``steps // every`` frames.
        seed: seeds the velocities and the Langevin noise.
        ensemble: ``"nvt"`` (Langevin) or ``"nve"`` (velocity Verlet).
        friction_per_fs: Langevin friction, 1/fs.
        on_frame: called with each kept frame as soon as it exists.
        resume: a frame this run kept before (``md_step`` in its info, momenta): continue
            from it to ``steps`` (``atoms`` must then hold the same atoms).

    Returns:
        The kept frames: copies with a ``SinglePointCalculator`` holding ``energy`` (eV),
        ``forces`` ((N, 3) eV/Å) and, if periodic in 3D and the oracle asks for it,
        ``stress`` (Voigt, eV/Å³) and the momenta; ``info`` has ``md_step``,
        ``md_time_fs`` and ``wall_time`` (mean wall time of one MD step since the last
        kept frame, s). After a ``resume``, only the frames made by this call.

    Raises:
        SimulationError: a setting is out of range.
        OracleError: the oracle failed at some step (the frames before it were already
            handed to ``on_frame``).
    """
    for name, value in (("steps", steps), ("every", every)):
        if value < 1:
            raise SimulationError(f"reference MD: {name} must be at least 1 (got {value}).")
    if timestep_fs <= 0 or temperature_K < 0:
        raise SimulationError(f"reference MD: timestep must be > 0 fs and temperature >= 0 K "
                              f"(got {timestep_fs} fs, {temperature_K} K).")
    if ensemble not in ENSEMBLES:
        raise SimulationError(f"reference MD: ensemble {ensemble!r} is not one of {ENSEMBLES}.")
    start_step = 0
    if resume is not None:
        start_step = _check_resume(resume, atoms, steps)
        work = resume.copy()
        work.calc = None
    else:
        work = atoms.copy()
    work.calc = oracle.make_calculator()
    rng = np.random.default_rng(seed)
    if resume is None:
        thermalize_momenta(work, temperature_K=temperature_K, rng=rng)
        Stationary(work, preserve_temperature=True)
    else:
        rng = np.random.default_rng([seed, start_step])
    dynamics: MolecularDynamics
    if ensemble == "nvt":
        dynamics = Langevin(work, timestep_fs * units.fs, temperature_K=temperature_K,
                            friction=friction_per_fs / units.fs, fixcm=False, rng=rng)
    else:
        dynamics = VelocityVerlet(work, timestep_fs * units.fs)
    stress = "stress" in oracle.config.properties and bool(work.pbc.all())
    frames: list[Atoms] = []
    last = time.perf_counter()
    dynamics.nsteps = start_step

    def keep() -> None:
        nonlocal last
        step = dynamics.nsteps
        if step == start_step:
            return
        now = time.perf_counter()
        frame = _frame(work, step, step * timestep_fs, (now - last) / every, stress)
        last = now
        frames.append(frame)
        if ensemble == "nvt":  # the noise after this step depends on (seed, step) only
            dynamics.rng = np.random.default_rng([seed, step])
        if on_frame is not None:
            on_frame(frame)

    dynamics.attach(keep, interval=every)
    try:
        dynamics.run(steps - start_step)
    except (OracleError, SimulationError):
        raise
    except Exception as exc:
        raise OracleError(f"reference MD with {oracle.name} failed after step "
                          f"{dynamics.nsteps}: {describe_exception(exc)}. Frames kept so far: "
                          f"{len(frames)}.") from exc
    return frames
