from pathlib import Path

import ase.io
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator


@pytest.fixture(scope="session")
def cu_cells(tmp_path_factory) -> tuple[Path, Path]:
    """Three rattled Cu cells (start structures) and EMT-labelled test frames."""
    folder = tmp_path_factory.mktemp("cu")
    starts, test = [], []
    for k in range(3):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=k)
        starts.append(atoms)
        labelled = atoms.copy()
        labelled.rattle(0.1, seed=10 + k)
        labelled.calc = EMT()
        results = {"energy": labelled.get_potential_energy(), "forces": labelled.get_forces()}
        labelled.calc = SinglePointCalculator(labelled, **results)
        test.append(labelled)
    ase.io.write(folder / "starts.xyz", starts)
    ase.io.write(folder / "test.xyz", test)
    return folder / "starts.xyz", folder / "test.xyz"


def learn_config(starts: Path, test: Path, **sections) -> dict:
    config = {
        "seed": 0,
        "oracle": {"type": "emt"},
        "executor": {"workers": 1},
        "initial": {"structures": str(starts)},
        "explore": {"structures": str(starts), "walkers": 2, "temperatures": [300, 900],
                    "steps": 30, "timestep": 2.0, "sample_every": 5},
        "select": {"lower": 0.002, "upper": 5.0, "max_labels": 2},
        "stop": {"max_iterations": 2, "accurate_fraction": 0.99},
        "test": str(test),
        "train": {
            "dtype": "float64",
            "data": {"valid_fraction": 0.3, "cache_dir": None},
            "model": {"architecture": "painn", "cutoff": 4.0, "num_features": 8,
                      "num_layers": 1, "num_radial": 6},
            "training": {"batch_size": 2, "max_epochs": 2, "lr": 0.005},
            "committee": {"size": 2, "processes": 1},
        },
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values} if isinstance(values, dict) else values
    return config
