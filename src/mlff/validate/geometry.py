"""Small structure operations shared by the checks: shortest distance, relaxation,
supercells. Lengths in Å, energies in eV, forces in eV/Å."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.neighborlist import neighbor_list
from ase.optimize import BFGS


def min_distance(atoms: Atoms, r_max: float = 6.0) -> float:
    """The shortest interatomic distance (Å), periodic images included; ``inf`` when no
    pair is closer than ``r_max`` (Å)."""
    if len(atoms) < 2 and not atoms.pbc.any():
        return math.inf
    distances = neighbor_list("d", atoms, r_max)
    return float(distances.min()) if len(distances) else math.inf


@dataclass
class Relaxation:
    """The outcome of :func:`relax`.

    Attributes:
        energy: final potential energy, eV.
        max_force: final largest force norm, eV/Å.
        steps: optimizer steps taken.
        converged: whether ``max_force <= fmax``.
    """

    energy: float
    max_force: float
    steps: int
    converged: bool


def relax(atoms: Atoms, calculator: BaseCalculator, fmax: float = 0.01,
          steps: int = 300) -> Relaxation:
    """Relax the positions of ``atoms`` in place (fixed cell) with BFGS.

    Args:
        atoms: the structure; its calculator is set to ``calculator``.
        calculator: any ASE calculator.
        fmax: convergence threshold on the largest force norm, eV/Å.
        steps: at most this many steps.
    """
    atoms.calc = calculator
    optimizer = BFGS(atoms, logfile=None)
    converged = bool(optimizer.run(fmax=fmax, steps=steps))
    max_force = float(np.linalg.norm(atoms.get_forces(), axis=1).max()) if len(atoms) else 0.0
    return Relaxation(float(atoms.get_potential_energy()), max_force, int(optimizer.nsteps),
                      converged or max_force <= fmax)


def isotropic_repeat(atoms: Atoms, min_atoms: int) -> tuple[int, int, int]:
    """The smallest ``(n, n, n)`` repetition of ``atoms`` with at least ``min_atoms`` atoms."""
    n = 1
    while len(atoms) * n**3 < min_atoms:
        n += 1
    return (n, n, n)


def single_point(atoms: Atoms, calculator: BaseCalculator) -> tuple[float, np.ndarray]:
    """Energy (eV) and forces ((N, 3) eV/Å) of a copy of ``atoms``."""
    atoms = atoms.copy()
    atoms.calc = calculator
    return float(atoms.get_potential_energy()), np.asarray(atoms.get_forces(), dtype=np.float64)
