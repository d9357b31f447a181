"""Labelled EMT copper sets and tiny models for the check tests, built in code."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from mlff.calculators import MLFFCalculator
from mlff.data.readers import structure_from_atoms
from mlff.validate.labelled import LabelledSet
from tests import helpers


def emt_labelled(atoms, config_type: str):
    """A Structure of ``atoms`` labelled by EMT (energy, forces, stress)."""
    atoms = atoms.copy()
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
               "stress": atoms.get_stress()}
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info["config_type"] = config_type
    return structure_from_atoms(atoms, source=f"emt:{config_type}")


def cu_set(name: str, seed: int, amplitude: float, count: int = 4) -> LabelledSet:
    """``count`` rattled Cu cells (4 and 8 atoms; the 8-atom ones have a vacancy)."""
    rng = np.random.default_rng(seed)
    structures = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        kind = "bulk"
        if k % 2:
            atoms = atoms.repeat((2, 1, 1))
            del atoms[0]
            kind = "vacancy"
        atoms.rattle(amplitude, seed=int(rng.integers(1 << 30)))
        structures.append(emt_labelled(atoms, kind))
    return LabelledSet(name, structures)


@pytest.fixture(scope="module")
def cu_test_set() -> LabelledSet:
    return cu_set("test", seed=0, amplitude=0.05)


@pytest.fixture(scope="module")
def cu_hot_set() -> LabelledSet:
    return cu_set("hot", seed=1, amplitude=0.25)


@pytest.fixture(scope="module")
def cu_potential():
    """A random-init tiny PaiNN over Cu alone (float64)."""
    return helpers.build_potential("painn", species=(29,), e0s=(-0.1,), scale=0.5)


@pytest.fixture
def cu_model(cu_potential):
    return MLFFCalculator(cu_potential)
