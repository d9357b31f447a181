"""Convergence of a DFT oracle's settings: energy, forces and stress against cutoff and
k-points, for one structure.

Each scan varies one setting with the others as configured and compares every step with
the most accurate one (the highest cutoff, the densest k-point mesh): the energy change
per atom, the largest force-component change and the largest stress change. A setting is
*converged* when it and every more accurate step are within the tolerances (1 meV/atom
and 10 meV/Å by default) of the reference.

Examples:
    >>> rows = scan(config, atoms, "cutoff", [300.0, 400.0, 500.0, 600.0])  # doctest: +SKIP
    >>> converged_value(rows)                                                # doctest: +SKIP
    400.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from ase import Atoms

from mlff.errors import ConfigError, OracleError
from mlff.oracles.config import OracleConfig
from mlff.oracles.cp2k import kpoint_mesh
from mlff.oracles.oracle import Oracle

Setting = Literal["cutoff", "kpoint_density"]
ENERGY_TOLERANCE = 1.0e-3  # eV/atom
FORCE_TOLERANCE = 1.0e-2  # eV/Å


@dataclass
class Step:
    """One calculation of a scan.

    Attributes:
        value: the setting (cutoff eV, or k-points per Å⁻¹).
        mesh: the k-point mesh used (``None``: Γ only).
        energy_per_atom: eV/atom.
        forces: (N, 3) eV/Å.
        stress: Voigt eV/Å³, or ``None`` (not periodic in 3D).
        wall_time: s.
        d_energy: |E - E_ref| per atom, eV/atom (filled by :func:`scan`).
        d_force: largest |F - F_ref| component, eV/Å.
        d_stress: largest |σ - σ_ref| component, eV/Å³ (``nan`` without stress).
    """

    value: float
    mesh: list[int] | None
    energy_per_atom: float
    forces: np.ndarray
    stress: np.ndarray | None
    wall_time: float
    d_energy: float = float("nan")
    d_force: float = float("nan")
    d_stress: float = float("nan")

    def converged(self, energy_tol: float = ENERGY_TOLERANCE,
                  force_tol: float = FORCE_TOLERANCE) -> bool:
        """Whether this step is within the tolerances of the reference."""
        return self.d_energy <= energy_tol and self.d_force <= force_tol


def check_scannable(config: OracleConfig) -> None:
    """Raise unless ``config`` is a DFT oracle with a cutoff and k-points to scan."""
    if config.type not in ("cp2k", "gpaw"):
        raise ConfigError(f"oracle check scans the cutoff and k-points of the cp2k and gpaw "
                          f"oracles; this oracle is '{config.type}'.")


def scan(config: OracleConfig, atoms: Atoms, setting: Setting,
         values: Sequence[float]) -> list[Step]:
    """Label ``atoms`` once per value of ``setting``; differences against the last value.

    Args:
        config: a ``cp2k`` or ``gpaw`` oracle (its other settings are kept).
        atoms: the structure (Å).
        setting: ``cutoff`` (eV) or ``kpoint_density`` (k-points per Å⁻¹; an explicit
            ``kpts`` of the config is dropped for this scan).
        values: increasing values; the last is the reference. Values giving the same
            k-point mesh as an earlier one are skipped.

    Raises:
        ConfigError: not a DFT oracle, or fewer than two values.
        OracleError: a calculation failed (its reason).
    """
    check_scannable(config)
    values = sorted(float(v) for v in values)
    if len(values) < 2:
        raise ConfigError(f"a {setting} scan needs at least two values (got {values}).")
    steps: list[Step] = []
    meshes: list[list[int] | None] = []
    for value in values:
        update = {setting: value}
        if setting == "kpoint_density":
            update["kpts"] = None
        trial = config.model_copy(update=update)
        mesh = kpoint_mesh(trial, atoms)
        if setting == "kpoint_density" and mesh in meshes:
            continue
        meshes.append(mesh)
        result = Oracle(trial).label(atoms)
        if not result.ok or result.atoms is None:
            raise OracleError(f"{setting} {value:g}: the calculation failed: {result.reason}")
        labelled = result.atoms
        stress = (np.array(labelled.get_stress()) if "stress" in labelled.calc.results
                  else None)
        steps.append(Step(value, mesh, labelled.get_potential_energy() / len(atoms),
                          np.array(labelled.get_forces()), stress, result.wall_time))
    reference = steps[-1]
    for step in steps:
        step.d_energy = abs(step.energy_per_atom - reference.energy_per_atom)
        step.d_force = float(np.abs(step.forces - reference.forces).max())
        if step.stress is not None and reference.stress is not None:
            step.d_stress = float(np.abs(step.stress - reference.stress).max())
    return steps


def converged_value(steps: Sequence[Step], energy_tol: float = ENERGY_TOLERANCE,
                    force_tol: float = FORCE_TOLERANCE) -> float | None:
    """The smallest value from which every step is converged (``None``: only the
    reference, i.e. extend the scan)."""
    best = None
    for step in reversed(steps[:-1]):
        if not step.converged(energy_tol, force_tol):
            break
        best = step.value
    return best
