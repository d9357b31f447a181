"""The PySCF oracle: DFT energy and analytic forces for molecules, and its failures."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.units import Hartree

from mlff.active.store import LabelStore, structure_key
from mlff.oracles import label_many, load_oracle

H2 = {"type": "pyscf", "xc": "PBE", "basis": "sto-3g", "conv_tol": 1e-11}


def _h2() -> Atoms:
    h2 = molecule("H2")
    h2.positions[1] += [0.05, -0.03, 0.08]  # off the equilibrium, off the axis
    return h2


def test_h2_energy_and_forces_match_finite_differences():
    h2 = _h2()
    result = load_oracle(H2).label(h2)
    assert result.ok, result.reason
    energy, forces = result.atoms.get_potential_energy(), result.atoms.get_forces()
    # PBE/sto-3g H2 near equilibrium: -1.15 Hartree
    assert energy == pytest.approx(-1.15 * Hartree, abs=0.05 * Hartree)
    assert np.abs(forces).max() > 0.1  # stretched: a real force
    energy_only = load_oracle({**H2, "properties": ["energy"]})
    h = 2e-4  # Å: truncation error ~1e-6 eV/Å, SCF noise ~1e-6 eV/Å
    numerical = np.zeros_like(forces)
    for atom in range(2):
        for axis in range(3):
            energies = []
            for sign in (1, -1):
                moved = h2.copy()
                moved.positions[atom, axis] += sign * h
                energies.append(energy_only.label(moved).atoms.get_potential_energy())
            numerical[atom, axis] = -(energies[0] - energies[1]) / (2 * h)
    np.testing.assert_allclose(forces, numerical, atol=1e-4)


def test_open_shell_runs_uks_and_bad_structures_fail_with_a_reason():
    hydrogen = Atoms("H", positions=[[0.0, 0.0, 0.0]])
    uks = load_oracle({**H2, "spin": 1}).label(hydrogen)
    assert uks.ok, uks.reason
    assert uks.atoms.get_potential_energy() == pytest.approx(-0.45 * Hartree, abs=0.05 * Hartree)

    odd = load_oracle(H2).label(hydrogen)  # one electron cannot be a singlet
    assert not odd.ok and "spin" in odd.reason.lower()

    periodic = _h2()
    periodic.cell = [5.0, 5.0, 5.0]
    periodic.pbc = True
    result = load_oracle(H2).label(periodic)
    assert not result.ok and "periodic" in result.reason and "molecules only" in result.reason


def test_unconverged_scf_is_stored_with_its_reason_and_the_next_structure_is_labelled(tmp_path):
    # two SCF iterations: enough for H2 in a minimal basis (its orbital is fixed by
    # symmetry), not for water with a tight threshold
    config = {"type": "pyscf", "xc": "PBE", "basis": "sto-3g", "conv_tol": 1e-10,
              "max_cycle": 2}
    structures = [molecule("H2O"), molecule("H2")]
    store = LabelStore(tmp_path / "labels.db")
    oracle = load_oracle(config)
    order = []

    def commit(index, result):
        order.append(index)
        atoms = structures[index]
        store.add(result, atoms, structure_key(atoms), oracle.provenance(0))

    with ThreadPoolExecutor(max_workers=1) as executor:
        results = label_many(structures, config, executor, on_result=commit)
    assert sorted(order) == [0, 1]
    assert not results[0].ok and "did not converge in max_cycle=2" in results[0].reason
    assert results[1].ok
    assert store.status(structure_key(structures[0])) == "failed"
    assert store.status(structure_key(structures[1])) == "ok"
    (failure,) = store.failures()
    assert "did not converge" in failure.info["reason"] and failure.get_chemical_formula() == "H2O"
    (label,) = store.labelled()
    assert label.info["oracle"] == "pyscf:PBE/sto-3g"
    assert label.info["oracle_settings"]["max_cycle"] == 2
