from pathlib import Path

import ase.io
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

ETHANOL = Path(__file__).resolve().parents[2] / "examples" / "ethanol"


@pytest.fixture(scope="session")
def ethanol_small(tmp_path_factory) -> Path:
    """The first 24 frames of the shipped ethanol training set."""
    path = tmp_path_factory.mktemp("data") / "ethanol24.xyz"
    ase.io.write(path, ase.io.read(ETHANOL / "train.xyz", ":24"))
    return path


@pytest.fixture(scope="session")
def cu_emt(tmp_path_factory) -> Path:
    """Rattled, strained fcc Cu cells labelled by ASE's EMT, with energy, forces and stress."""
    frames = []
    for k in range(12):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.02 * (k % 4), cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                   "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        frames.append(atoms)
    path = tmp_path_factory.mktemp("data") / "cu_emt.xyz"
    ase.io.write(path, frames)
    return path


def small_config(train_file: Path, **training) -> dict:
    config = {
        "seed": 1,
        "dtype": "float64",
        "data": {"train": str(train_file), "valid_fraction": 0.25, "cache_dir": None},
        "model": {"architecture": "painn", "cutoff": 4.0, "num_features": 8, "num_layers": 2,
                  "num_radial": 6},
        "training": {"batch_size": 4, "max_epochs": 3, "lr": 0.005, **training},
    }
    return config
