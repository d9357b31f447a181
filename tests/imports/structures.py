"""The structures imported foundation models are compared on (deterministic, rattled)."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc111, molecule


def _rattled(atoms: Atoms, seed: int, amplitude: float = 0.05) -> Atoms:
    atoms.rattle(amplitude, seed=seed)
    return atoms


def triclinic_alloy() -> Atoms:
    """Eight atoms of Cu, Ni, Pd, Au in a skewed cell (no two cell angles equal)."""
    cell = np.array([[5.1, 0.0, 0.0], [0.9, 4.9, 0.0], [0.7, 0.5, 5.2]])
    rng = np.random.default_rng(3)
    fractional = (np.indices((2, 2, 2)).reshape(3, -1).T + 0.5) / 2.0
    fractional = fractional + rng.normal(0.0, 0.02, fractional.shape)
    return Atoms("CuNiPdAuCuNiPdAu", scaled_positions=fractional, cell=cell, pbc=True)


def small_structures() -> dict[str, Atoms]:
    """A few to a few dozen atoms each: bulk crystals of five elements, a triclinic alloy,
    a surface slab, a vacancy cell and an isolated molecule."""
    vacancy = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 1, 1))
    del vacancy[3]
    slab = fcc111("Pt", size=(2, 2, 3), vacuum=5.0)
    slab.pbc = (True, True, False)
    return {
        "Cu-fcc": _rattled(bulk("Cu", "fcc", a=3.61, cubic=True), 1),
        "Si-diamond": _rattled(bulk("Si", "diamond", a=5.43), 2),
        "Fe-bcc": _rattled(bulk("Fe", "bcc", a=2.87, cubic=True), 3),
        "Mg-hcp": _rattled(bulk("Mg", "hcp", a=3.21, c=5.21), 4),
        "NaCl-rocksalt": _rattled(bulk("NaCl", "rocksalt", a=5.64), 5),
        "CuNiPdAu-triclinic": triclinic_alloy(),
        "Pt111-slab": _rattled(slab, 6),
        "Al-vacancy": _rattled(vacancy, 7),
        "ethanol-molecule": _rattled(molecule("CH3CH2OH"), 8, 0.03),
    }


def large_cell() -> Atoms:
    """500 atoms: rattled fcc Cu, 5 x 5 x 5 cubic cells."""
    return _rattled(bulk("Cu", "fcc", a=3.61, cubic=True).repeat(5), 9)
