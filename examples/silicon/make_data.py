"""Write the seed structures of the silicon campaign (run from anywhere; deterministic).

    python examples/silicon/make_data.py

Everything starts from the diamond unit cell (a = 5.43 Å, near PBE's 5.47 Å):

- ``initial.xyz``: labelled by the oracle before iteration 1: four 8-atom cubes
  strained by -2 to +3 % and rattled (0.05-0.12 Å), a 15-atom vacancy cell (the 16-atom
  cell 2x1x1 cubes less one atom) and a 12-atom (100) slab (2x1 surface cell, 6 layers,
  6.5 Å vacuum each side: one k-point along z), each rattled by 0.05 Å.
- ``starts.xyz``: where the MD walkers start: the 8-atom cube (twice: NVT and NPT), the
  slab and the vacancy cell, unrattled. ``config_type`` says which.
"""

from pathlib import Path

import ase.io
from ase import Atoms
from ase.build import bulk, diamond100

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
    return frames


def starts() -> list[Atoms]:
    return [tagged(cube(), "bulk"), tagged(cube(), "bulk_npt"), tagged(slab(), "surface_100"),
            tagged(vacancy(), "vacancy")]


if __name__ == "__main__":
    ase.io.write(HERE / "initial.xyz", initial())
    ase.io.write(HERE / "starts.xyz", starts())
