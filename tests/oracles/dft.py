"""Structures and finite-difference checks shared by the CP2K and GPAW oracle tests.

The checks compare a code's forces and stress with central differences of the *same*
code's energy (internal consistency), so the settings may be cheap: low cutoffs and few
k-points. Each DFT calculation costs seconds, so besides single components
(:func:`fd_forces`) there are directional derivatives: two energies
along a generic displacement of every atom check every force component at once
(:func:`fd_force_along`), two along a generic strain every stress component
(:func:`fd_stress_along`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule

FORCE_STEP = 0.002  # Å (the truncation error of 0.01 Å is ~4e-3 eV/Å in silicon)
STRAIN_STEP = 0.001


def silicon2() -> Atoms:
    """The 2-atom diamond silicon cell, atom 1 displaced off its symmetric site."""
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[1] += [0.07, -0.04, 0.03]
    return atoms


def water() -> Atoms:
    """H2O, slightly distorted, in a 7 Å box with no periodicity."""
    atoms = molecule("H2O")
    atoms.positions[1] += [0.0, 0.05, 0.03]
    atoms.center(vacuum=3.0)
    atoms.pbc = False
    return atoms


def silicon16_displaced() -> Atoms:
    """The 16-atom silicon cell (two conventional cubes), every atom rattled by 0.15 Å,
    then atom 0 moved towards its nearest neighbour until they are 2.14 Å apart: the kind
    of cell active learning picks, on which plain SCF mixing without smearing oscillates."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (2, 1, 1)
    atoms.rattle(0.15, seed=3)
    vectors = atoms.get_distances(0, range(1, len(atoms)), mic=True, vector=True)
    lengths = np.linalg.norm(vectors, axis=1)
    nearest = int(np.argmin(lengths))
    atoms.positions[0] += vectors[nearest] / lengths[nearest] * (lengths[nearest] - 2.14)
    return atoms


def fd_forces(energy: Callable[[Atoms], float], atoms: Atoms,
              components: list[tuple[int, int]]) -> np.ndarray:
    """-dE/dx of ``energy`` by central differences for (atom, axis) ``components``, eV/Å."""
    values = []
    for atom, axis in components:
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * FORCE_STEP
            energies.append(energy(moved))
        values.append(-(energies[0] - energies[1]) / (2 * FORCE_STEP))
    return np.array(values)


def generic_direction(atoms: Atoms, seed: int = 0) -> np.ndarray:
    """A unit displacement (N, 3) with every component non-zero and of either sign, so a
    wrong force component of any atom or axis changes the projection ``F · d``."""
    rng = np.random.default_rng(seed)
    shape = (len(atoms), 3)
    direction = rng.uniform(0.5, 1.0, shape) * rng.choice([-1.0, 1.0], shape)
    return direction / np.linalg.norm(direction)


def fd_force_along(energy: Callable[[Atoms], float], atoms: Atoms,
                   direction: np.ndarray) -> float:
    """-dE/dλ for positions ``x + λ d`` (``d`` unit, (N, 3)) by central differences: the
    finite-difference value of ``(F * d).sum()``, eV/Å."""
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions += sign * FORCE_STEP * direction
        energies.append(energy(moved))
    return -(energies[0] - energies[1]) / (2 * FORCE_STEP)


GENERIC_STRAIN = np.array([[1.0, 0.3, -0.4], [0.3, -0.7, 0.5], [-0.4, 0.5, 0.6]])


def fd_stress_along(energy: Callable[[Atoms], float], atoms: Atoms,
                    strain: np.ndarray = GENERIC_STRAIN) -> float:
    """(1/V) dE/dt for the cell ``(1 + t ε)`` (``ε`` symmetric (3, 3)) by central
    differences: the finite-difference value of ``stress_contraction(σ, ε)``, eV/Å³."""
    energies = []
    for sign in (1, -1):
        strained = atoms.copy()
        strained.set_cell(atoms.cell.array @ (np.eye(3) + sign * STRAIN_STEP * strain),
                          scale_atoms=True)
        energies.append(energy(strained))
    return (energies[0] - energies[1]) / (2 * STRAIN_STEP) / atoms.get_volume()


def stress_contraction(voigt: np.ndarray, strain: np.ndarray = GENERIC_STRAIN) -> float:
    """Σ_ij σ_ij ε_ij of a Voigt stress (``xx yy zz yz xz xy``) and a symmetric strain."""
    xx, yy, zz, yz, xz, xy = voigt
    sigma = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    return float((sigma * strain).sum())
