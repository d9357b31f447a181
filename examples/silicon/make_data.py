"""Write the seed structures of the silicon campaign (run from anywhere; deterministic).

    python examples/silicon/make_data.py

Everything starts from the diamond unit cell (a = 5.43 Å, near PBE's 5.47 Å):

- ``initial.xyz``: labelled by the oracle before iteration 1: four 8-atom cubes
  strained by -2 to +3 % and rattled (0.05-0.12 Å), a 15-atom vacancy cell (the 16-atom
  cell 2x1x1 cubes less one atom) and a 12-atom (100) slab (2x1 surface cell, 6 layers,
  6.5 Å vacuum each side: one k-point along z), each rattled by 0.05 Å. Then what the
  first 6 left out (the equation of state, the elastic constants, the vacancy energy and
  the slab energies were extrapolated from them): six 8-atom cubes strained isotropically
  by -4 to +4 % and four strained along one axis or sheared by 1.5-2 %, barely rattled
  (0.02 Å: their stresses give the curvature of the energy), three 15-atom and one
  31-atom vacancy cells, three (100) slabs rattled by 0.10-0.15 Å (as hot as 1000 K), and
  two 16-atom slabs of one conventional cube face each, (100) and (111), 6.5 Å vacuum.
- ``starts.xyz``: where the MD walkers start: the 8-atom cube (twice: NVT and NPT), the
  slab and the vacancy cell, unrattled. ``config_type`` says which.
"""

from pathlib import Path

import ase.io
from ase import Atoms
import numpy as np
from ase.build import bulk, diamond100, surface

HERE = Path(__file__).resolve().parent
A0 = 5.43  # Å


def cube(a: float = A0) -> Atoms:
    """The conventional 8-atom diamond cube."""
    return bulk("Si", "diamond", a=a, cubic=True)


def vacancy() -> Atoms:
    """Two cubes side by side (16 atoms) less the first atom: 15 atoms."""
    atoms = cube().repeat((2, 1, 1))
    del atoms[0]
    return atoms


def slab() -> Atoms:
    """(100) slab, 2x1 surface cell (7.68 x 3.84 Å), 6 layers (12 atoms), 6.5 Å vacuum each
    side; periodic in all three directions (the oracle then puts one k-point along z)."""
    atoms = diamond100("Si", size=(2, 1, 6), a=A0, vacuum=6.5)
    atoms.pbc = True
    atoms.info.pop("adsorbate_info", None)
    return atoms


def vacancy31() -> Atoms:
    """Four cubes (2x2x1, 32 atoms) less the first atom: 31 atoms."""
    atoms = cube().repeat((2, 2, 1))
    del atoms[0]
    return atoms


def face_slab(miller: tuple[int, int, int]) -> Atoms:
    """16-atom slab of two layers of the conventional cube cut along ``miller`` (the cells
    of the validation's surface energies), 6.5 Å vacuum each side, periodic."""
    atoms = surface(cube(), miller, 2, vacuum=6.5, periodic=True)
    atoms.pbc = True
    return atoms


def strained(atoms: Atoms, strain: np.ndarray) -> Atoms:
    """``atoms`` with its cell (and positions) deformed by the symmetric strain tensor."""
    atoms = atoms.copy()
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + strain), scale_atoms=True)
    return atoms


def tagged(atoms: Atoms, kind: str) -> Atoms:
    atoms.info["config_type"] = kind
    return atoms


def initial() -> list[Atoms]:
    frames = []
    for k, (strain, amplitude) in enumerate([(-0.02, 0.05), (0.0, 0.08), (0.01, 0.12),
                                             (0.03, 0.08)]):
        atoms = cube(A0 * (1 + strain))
        atoms.rattle(amplitude, seed=k)
        frames.append(tagged(atoms, "bulk_rattled"))
    for k, (make, kind) in enumerate([(vacancy, "vacancy"), (slab, "surface_100")]):
        atoms = make()
        atoms.rattle(0.05, seed=10 + k)
        frames.append(tagged(atoms, kind))
    return frames + physics()


def physics() -> list[Atoms]:
    """The seeds after the first 6: strained bulk, vacancies and slabs (module docstring)."""
    frames = []
    for k, linear in enumerate([-0.04, -0.015, -0.005, 0.005, 0.015, 0.04]):
        atoms = cube(A0 * (1 + linear))
        atoms.rattle(0.02, seed=20 + k)
        frames.append(tagged(atoms, "bulk_strained"))
    for k, (i, j, value) in enumerate([(0, 0, 0.015), (2, 2, -0.015), (0, 1, 0.01),
                                       (1, 2, -0.01)]):
        epsilon = np.zeros((3, 3))
        epsilon[i, j] = epsilon[j, i] = value
        atoms = strained(cube(), epsilon)
        atoms.rattle(0.02, seed=30 + k)
        frames.append(tagged(atoms, "bulk_strained"))
    for k, (linear, amplitude) in enumerate([(-0.01, 0.03), (0.005, 0.10), (0.01, 0.06)]):
        atoms = strained(vacancy(), linear * np.eye(3))
        atoms.rattle(amplitude, seed=40 + k)
        frames.append(tagged(atoms, "vacancy"))
    atoms = vacancy31()
    atoms.rattle(0.03, seed=44)
    frames.append(tagged(atoms, "vacancy"))
    for k, (linear, amplitude) in enumerate([(0.0, 0.10), (0.01, 0.15), (-0.01, 0.12)]):
        atoms = strained(slab(), linear * np.diag([1.0, 1.0, 0.0]))
        atoms.rattle(amplitude, seed=50 + k)
        frames.append(tagged(atoms, "surface_100"))
    for k, (miller, kind) in enumerate([((1, 0, 0), "surface_100"), ((1, 1, 1), "surface_111")]):
        atoms = face_slab(miller)
        atoms.rattle(0.05, seed=60 + k)
        frames.append(tagged(atoms, kind))
    return frames


def starts() -> list[Atoms]:
    return [tagged(cube(), "bulk"), tagged(cube(), "bulk_npt"), tagged(slab(), "surface_100"),
            tagged(vacancy(), "vacancy")]


if __name__ == "__main__":
    ase.io.write(HERE / "initial.xyz", initial())
    ase.io.write(HERE / "starts.xyz", starts())
