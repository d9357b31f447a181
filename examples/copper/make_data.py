"""Write the structures of the copper active-learning example (run from anywhere).

    python examples/copper/make_data.py

initial.xyz: 4 rattled 32-atom fcc Cu cells (labelled by the oracle before iteration 1);
starts.xyz: 2 cells the MD walkers start from; test.xyz: 6 cells rattled more strongly,
labelled with EMT (energies in eV, forces in eV/Å), the fixed test set. Deterministic.
"""

from pathlib import Path

import ase.io
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

HERE = Path(__file__).resolve().parent


def cell(seed: int, amplitude: float, a: float = 3.61):
    """A 2x2x2 cubic fcc Cu cell (32 atoms), positions rattled by ``amplitude`` Å."""
    atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(2)
    atoms.rattle(amplitude, seed=seed)
    return atoms


def labelled(atoms):
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
               "stress": atoms.get_stress()}
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


if __name__ == "__main__":
    lattice = (3.58, 3.61, 3.64, 3.61)
    ase.io.write(HERE / "initial.xyz", [cell(k, 0.05, a) for k, a in enumerate(lattice)])
    ase.io.write(HERE / "starts.xyz", [cell(10 + k, 0.02) for k in range(2)])
    test = [labelled(cell(20 + k, 0.12, 3.57 + 0.02 * k)) for k in range(6)]
    ase.io.write(HERE / "test.xyz", test)
