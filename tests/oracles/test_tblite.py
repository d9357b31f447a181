"""The xTB oracle (tblite GFN2-xTB): water, a periodic cell, a failed SCC."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.units import Hartree
from tblite.ase import TBLite

from mlff.oracles import load_oracle


def test_gfn2_water_labels_match_tblite_and_finite_differences():
    water = molecule("H2O")
    water.rattle(0.02, seed=1)
    result = load_oracle({"type": "tblite"}).label(water)
    assert result.ok, result.reason
    labelled = result.atoms
    assert set(labelled.calc.results) == {"energy", "forces"}
    reference = water.copy()
    reference.calc = TBLite(method="GFN2-xTB", verbosity=0)
    assert labelled.get_potential_energy() == pytest.approx(reference.get_potential_energy(),
                                                            abs=1e-8)
    # GFN2-xTB water: -5.07 Hartree, in eV
    assert labelled.get_potential_energy() == pytest.approx(-5.07 * Hartree, abs=0.2)
    forces = labelled.get_forces()
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-6)
    oracle = load_oracle({"type": "tblite", "properties": ["energy"]})
    h = 1e-4
    numerical = np.zeros_like(forces)
    for atom in range(len(water)):
        for axis in range(3):
            energies = []
            for sign in (1, -1):
                moved = water.copy()
                moved.positions[atom, axis] += sign * h
                energies.append(oracle.label(moved).atoms.get_potential_energy())
            numerical[atom, axis] = -(energies[0] - energies[1]) / (2 * h)
    np.testing.assert_allclose(forces, numerical, atol=1e-4)


def test_periodic_cell_stress_is_the_strain_derivative_of_the_energy():
    silicon = bulk("Si")
    oracle = load_oracle({"type": "tblite", "method": "GFN1-xTB"})
    result = oracle.label(silicon)
    assert result.ok, result.reason
    stress = result.atoms.get_stress()
    assert stress.shape == (6,) and np.isfinite(stress).all()
    # isotropic strain eps: dE/deps = V (s_xx + s_yy + s_zz), ASE's sign and eV/Å³
    eps = 1e-4
    energies = []
    for sign in (1, -1):
        strained = silicon.copy()
        strained.set_cell(silicon.cell * (1 + sign * eps), scale_atoms=True)
        energies.append(oracle.label(strained).atoms.get_potential_energy())
    derivative = (energies[0] - energies[1]) / (2 * eps)
    assert derivative == pytest.approx(silicon.get_volume() * stress[:3].sum(), rel=1e-3)


def test_scc_that_does_not_converge_is_a_failure():
    result = load_oracle({"type": "tblite", "max_iterations": 1}).label(molecule("H2O"))
    assert not result.ok and result.atoms is None
    assert "not converged" in result.reason
