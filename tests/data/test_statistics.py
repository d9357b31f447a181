"""Dataset statistics: E0s, shift, force RMS, neighbours."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.neighborlist import neighbor_list as ase_neighbor_list

from mlff.data import GraphDataset, Structure
from mlff.data.statistics import (
    check_e0s,
    e0s_from_file,
    e0s_least_squares,
    energy_shift,
    force_rms,
    mean_num_neighbors,
    per_atom_energy_std,
)
from mlff.errors import DataError
from tests import helpers

TRUE_E0S = {1: -13.6, 6: -1029.8, 8: -2041.3}


def synthetic_dataset(num=12, noise=0.0, seed=0, forces=True):
    """Random H/C/O clusters whose energy is the sum of TRUE_E0S (+ noise)."""
    rng = np.random.default_rng(seed)
    structures = []
    for k in range(num):
        numbers = rng.choice(list(TRUE_E0S), size=rng.integers(2, 8))
        atoms = Atoms(numbers=numbers, positions=rng.uniform(0, 6, (len(numbers), 3)))
        energy = sum(TRUE_E0S[z] for z in numbers) + noise * rng.normal()
        structures.append(Structure(
            atoms, energy=energy, forces=rng.normal(size=(len(numbers), 3)) if forces else None,
            source=f"synthetic:{k}",
        ))
    return GraphDataset.from_structures(structures, cutoff=3.0)


def test_least_squares_recovers_e0s():
    e0s = e0s_least_squares(synthetic_dataset(), [1, 6, 8])
    assert set(e0s) == {1, 6, 8}
    for z, value in TRUE_E0S.items():
        assert e0s[z] == pytest.approx(value, abs=1e-8)
    noisy = e0s_least_squares(synthetic_dataset(num=60, noise=0.01, seed=1), [1, 6, 8])
    for z, value in TRUE_E0S.items():
        assert noisy[z] == pytest.approx(value, abs=0.02)


def test_least_squares_needs_energies():
    dataset = synthetic_dataset()
    for graph in dataset.graphs:
        graph["has_energy"][:] = False
    with pytest.raises(DataError, match="no structure"):
        e0s_least_squares(dataset, [1, 6, 8])


def test_energy_shift_and_std_after_e0s():
    dataset = synthetic_dataset()
    assert energy_shift(dataset, TRUE_E0S) == pytest.approx(0.0, abs=1e-9)
    shifted = {z: e - 0.5 for z, e in TRUE_E0S.items()}
    assert energy_shift(dataset, shifted) == pytest.approx(0.5, abs=1e-9)
    assert per_atom_energy_std(dataset, shifted) == pytest.approx(0.0, abs=1e-6)
    assert per_atom_energy_std(synthetic_dataset(noise=1.0), TRUE_E0S) > 0.05


def test_e0s_from_file(tmp_path):
    frames = []
    for z, energy in TRUE_E0S.items():
        atoms = Atoms(numbers=[z], positions=[[0, 0, 0]])
        atoms.calc = SinglePointCalculator(atoms, energy=energy)
        frames.append(atoms)
    path = tmp_path / "isolated.xyz"
    ase.io.write(path, frames, format="extxyz")
    assert e0s_from_file(path) == pytest.approx(TRUE_E0S)


def test_e0s_file_with_a_molecule(tmp_path):
    atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])
    atoms.calc = SinglePointCalculator(atoms, energy=-31.0)
    path = tmp_path / "isolated.xyz"
    ase.io.write(path, [atoms], format="extxyz")
    with pytest.raises(DataError, match="one atom per frame") as info:
        e0s_from_file(path)
    assert f"{path}:0" in str(info.value)


def test_e0s_file_without_energy(tmp_path):
    path = tmp_path / "isolated.xyz"
    ase.io.write(path, [Atoms("H")], format="extxyz")
    with pytest.raises(DataError, match="no energy label"):
        e0s_from_file(path)


def test_check_e0s_names_missing_elements():
    check_e0s(TRUE_E0S, [1, 6, 8], "e0s.xyz")
    with pytest.raises(DataError, match="e0s.xyz: no isolated-atom energy for Cu"):
        check_e0s(TRUE_E0S, [1, 29], "e0s.xyz")


def test_force_rms():
    dataset = synthetic_dataset()
    forces = np.concatenate([g["forces"].numpy() for g in dataset.graphs])
    assert force_rms(dataset) == pytest.approx(np.sqrt((forces**2).mean()))
    assert force_rms(synthetic_dataset(forces=False)) == 1.0


def test_mean_num_neighbors():
    frames = [helpers.ethanol(), helpers.copper(), helpers.water()]
    dataset = GraphDataset.from_structures([Structure(a) for a in frames], cutoff=3.0)
    pairs = sum(len(ase_neighbor_list("i", a, 3.0)) for a in frames)
    assert mean_num_neighbors(dataset) == pytest.approx(pairs / sum(len(a) for a in frames))
    assert mean_num_neighbors(dataset) > 1
