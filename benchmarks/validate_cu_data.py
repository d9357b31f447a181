"""EMT-labelled copper data for `benchmarks/validate_cu.py`: training, test and transfer sets.

    python benchmarks/validate_cu_data.py --out bench-out/validate-cu/data

Writes extxyz files labelled by ASE's EMT (energy eV, forces eV/Å, stress eV/Å³ for the
3D-periodic cells), each frame tagged with a ``config_type``:

- ``train.xyz``: Langevin MD of 32-atom fcc cells at 300-1200 K and three lattice
  constants (``bulk_md``), randomly strained and rattled 4- and 32-atom cells
  (``strained``), an equation-of-state scan of the 1-atom cell (``eos``), MD of a
  31-atom cell with a vacancy (``vacancy``) and of (100), (110), (111) slabs
  (``surface``).
- ``test.xyz``: new MD runs under the training conditions (in distribution).
- ``hot_1500K.xyz``, ``slab_211.xyz``, ``divacancy.xyz``: other conditions (transfer).

Every MD is seeded; the same command writes the same files.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms, units
from ase.build import bulk, fcc100, fcc110, fcc111, fcc211
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta

A0 = 3.59  # EMT's Cu lattice constant, Å


def labelled(atoms: Atoms, config_type: str) -> Atoms:
    """A copy of ``atoms`` with EMT's energy, forces (and stress when 3D-periodic)."""
    frame = atoms.copy()
    frame.calc = EMT()
    results = {"energy": frame.get_potential_energy(), "forces": frame.get_forces()}
    if frame.pbc.all():
        results["stress"] = frame.get_stress()
    frame.calc = SinglePointCalculator(frame, **results)
    frame.info = {"config_type": config_type}
    return frame


def md_frames(atoms: Atoms, temperature_K: float, frames: int, every: int, seed: int,
              config_type: str, equilibrate: int = 200) -> list[Atoms]:
    """``frames`` snapshots, every ``every`` 2-fs Langevin steps after ``equilibrate`` steps."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=temperature_K, rng=rng)
    Stationary(atoms)
    dyn = Langevin(atoms, 2.0 * units.fs, temperature_K=temperature_K, friction=0.02 / units.fs,
                   fixcm=False, rng=rng)
    dyn.run(equilibrate)
    out = []
    for _ in range(frames):
        dyn.run(every)
        out.append(labelled(atoms, config_type))
    return out


def bulk_cell(a: float = A0, repeat: int = 2) -> Atoms:
    """The cubic 4-atom fcc cell with lattice constant ``a`` (Å), repeated ``repeat`` times."""
    return bulk("Cu", "fcc", a=a, cubic=True).repeat(repeat)


def vacancy_cell(a: float = A0, removed: Iterable[int] = (0,)) -> Atoms:
    """The 32-atom cubic cell with the atoms ``removed``."""
    atoms = bulk_cell(a)
    del atoms[list(removed)]
    return atoms


def periodic(slab: Atoms) -> Atoms:
    """``slab`` made periodic in z too: its vacuum gap (12 Å) is wider than EMT's range, and
    3D-periodic cells carry a stress label, which training with a stress loss needs."""
    slab.pbc = True
    return slab


def slabs() -> list[Atoms]:
    """(100), (110) and (111) slabs, 2x2 surface cells, 6 Å of vacuum each side."""
    return [periodic(build("Cu", (2, 2, 6), a=A0, vacuum=6.0))
            for build in (fcc100, fcc110, fcc111)]


def strained(count: int, seed: int) -> list[Atoms]:
    """Cells under random strains (|ε| up to ~4%), rattled by 0.03 Å."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=A0, cubic=True).repeat(1 if k % 2 else 2)
        strain = rng.uniform(-0.04, 0.04, (3, 3))
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.5 * (strain + strain.T)), scale_atoms=True)
        atoms.rattle(0.03, seed=int(rng.integers(1 << 30)))
        out.append(labelled(atoms, "strained"))
    return out


def eos_scan() -> list[Atoms]:
    """The 1-atom fcc cell at 21 volumes from 88% to 112% of EMT's equilibrium volume."""
    return [labelled(bulk("Cu", "fcc", a=A0 * s ** (1 / 3)), "eos")
            for s in np.linspace(0.88, 1.12, 21)]


def training_set(seed: int = 0) -> list[Atoms]:
    """Every training frame (about 560 structures of 1-32 atoms, plus 24-atom slabs)."""
    frames: list[Atoms] = []
    for i, (a, temperature) in enumerate(
        (a, t) for a in (A0 * 0.985, A0, A0 * 1.015) for t in (300, 600, 900, 1200)
    ):
        frames += md_frames(bulk_cell(a), temperature, 25, 40, seed + i, "bulk_md")
    frames += strained(80, seed + 100)
    frames += eos_scan()
    for i, temperature in enumerate((300, 600, 900)):
        frames += md_frames(vacancy_cell(), temperature, 20, 40, seed + 200 + i, "vacancy")
    for i, slab in enumerate(slabs()):
        for j, temperature in enumerate((300, 700)):
            frames += md_frames(slab, temperature, 15, 40, seed + 300 + 2 * i + j, "surface")
    return frames


def test_set(seed: int = 1000) -> list[Atoms]:
    """New runs under training conditions: bulk at 300 and 900 K, vacancy and slab at 600 K."""
    frames = md_frames(bulk_cell(), 300, 20, 40, seed, "bulk_md")
    frames += md_frames(bulk_cell(), 900, 20, 40, seed + 1, "bulk_md")
    frames += md_frames(vacancy_cell(), 600, 10, 40, seed + 2, "vacancy")
    frames += md_frames(slabs()[2], 600, 10, 40, seed + 3, "surface")
    return frames


def transfer_sets(seed: int = 2000) -> dict[str, list[Atoms]]:
    """Conditions outside the training data: 1500 K bulk, a (211) step slab, a divacancy."""
    step = periodic(fcc211("Cu", (3, 2, 6), a=A0, vacuum=6.0))
    return {
        "hot_1500K": md_frames(bulk_cell(), 1500, 20, 40, seed, "hot"),
        "slab_211": md_frames(step, 600, 20, 40, seed + 1, "step_surface"),
        "divacancy": md_frames(vacancy_cell(removed=(0, 1)), 600, 20, 40, seed + 2, "divacancy"),
    }


def write_all(out: Path) -> dict[str, Path]:
    """Write every set into ``out``; returns name -> path (existing files are kept)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"train": out / "train.xyz", "test": out / "test.xyz"}
    paths.update({name: out / f"{name}.xyz" for name in ("hot_1500K", "slab_211", "divacancy")})
    if all(p.exists() for p in paths.values()):
        return paths
    ase.io.write(paths["train"], training_set(), format="extxyz")
    ase.io.write(paths["test"], test_set(), format="extxyz")
    for name, frames in transfer_sets().items():
        ase.io.write(paths[name], frames, format="extxyz")
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out/validate-cu/data"))
    args = parser.parse_args()
    for name, path in write_all(args.out).items():
        print(f"{name}: {path} ({len(ase.io.read(path, ':'))} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
