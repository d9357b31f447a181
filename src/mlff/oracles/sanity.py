"""Sanity guard: labels a reference code returned but no one should train on.

A DFT run can return numbers without saying it failed (an SCF that stopped somewhere, a
broken pseudopotential, a cell that exploded). Two checks mark such a label *suspect*,
stored as a failure whose reason starts with ``suspect`` instead of as a label:

- :func:`suspect_forces`: a force component above ``max_force`` (eV/Å) (every oracle);
- :class:`EnergyGuard`: an energy per atom far from what earlier labels of the same
  store allow: per-element reference energies are fitted by least squares to the stored
  labels (E ≈ Σ_Z n_Z μ_Z, which isolated-atom labels in the store pin down) and a new
  label whose residual per atom exceeds ``max_deviation`` eV/atom is suspect.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms

if TYPE_CHECKING:
    from mlff.oracles.compute import LabelResult

SUSPECT = "suspect"
# fewer earlier labels than this (or an element they do not contain): no energy check
MIN_LABELS = 4


def suspect_forces(results: dict[str, Any], max_force: float | None) -> str | None:
    """The reason to reject ``results`` for a force above ``max_force`` eV/Å, or ``None``."""
    if max_force is None or "forces" not in results:
        return None
    forces = np.asarray(results["forces"], dtype=float)
    if forces.size == 0:
        return None
    largest = float(np.abs(forces).max())
    if largest <= max_force:
        return None
    atom = int(np.unravel_index(np.abs(forces).argmax(), forces.shape)[0])
    return (f"{SUSPECT}: a force of {largest:.1f} eV/Å on atom {atom} exceeds the sanity "
            f"limit max_force {max_force:g} eV/Å (a failed DFT run, or atoms far too close); "
            "not stored as a label")


class EnergyGuard:
    """Energy-per-atom check of new labels against a fit to earlier ones.

    Args:
        labelled: earlier labelled structures (with energies, eV).
        max_deviation: largest residual of a new label from the fit, eV/atom (plus the
            largest residual of the earlier labels); ``None``: never suspect.
    """

    def __init__(self, labelled: Iterable[Atoms], max_deviation: float | None = 2.0) -> None:
        self.max_deviation = max_deviation
        self._numbers: list[np.ndarray] = []
        self._energies: list[float] = []
        self._mu: dict[int, float] | None = None
        self._spread = 0.0
        for atoms in labelled:
            self.add(atoms.numbers, float(atoms.get_potential_energy()))

    def add(self, numbers: np.ndarray, energy: float) -> None:
        """Record an accepted label (atomic numbers, energy eV)."""
        self._numbers.append(np.asarray(numbers))
        self._energies.append(energy)
        self._mu = None

    def _fit(self) -> None:
        elements = sorted({int(z) for n in self._numbers for z in n})
        counts = np.array([[np.count_nonzero(n == z) for z in elements] for n in self._numbers],
                          dtype=float)
        energies = np.array(self._energies)
        mu, *_ = np.linalg.lstsq(counts, energies, rcond=None)
        self._mu = dict(zip(elements, mu.tolist()))
        residual = (energies - counts @ mu) / counts.sum(axis=1)
        self._spread = float(np.abs(residual).max())

    def screen(self, result: LabelResult) -> LabelResult:
        """``result``, or a failure if its label is suspect; accepted labels join the fit."""
        if not result.ok or result.atoms is None:
            return result
        numbers = result.atoms.numbers
        energy = float(result.atoms.get_potential_energy())
        reason = self.check(numbers, energy)
        if reason is not None:
            return dataclasses.replace(result, ok=False, atoms=None, reason=reason)
        self.add(numbers, energy)
        return result

    def check(self, numbers: np.ndarray, energy: float) -> str | None:
        """The reason to reject a new label (``numbers``, ``energy`` eV), or ``None``."""
        if self.max_deviation is None or len(self._energies) < MIN_LABELS:
            return None
        if self._mu is None:
            self._fit()
        assert self._mu is not None
        if any(int(z) not in self._mu for z in numbers):
            return None
        expected = sum(self._mu[int(z)] for z in numbers)
        deviation = (energy - expected) / len(numbers)
        limit = self.max_deviation + self._spread
        if abs(deviation) <= limit:
            return None
        return (f"{SUSPECT}: energy {energy / len(numbers):.3f} eV/atom is {deviation:+.2f} "
                f"eV/atom from what the {len(self._energies)} earlier labels allow (limit "
                f"{limit:.2f} eV/atom); not stored as a label")
