"""The ASE calculator adds D3 back to a model trained on labels minus D3."""

from __future__ import annotations

import numpy as np
import pytest

from mlff.calculators.ase import MLFFCalculator
from mlff.data.dispersion import D3Settings
from mlff.errors import ConfigError
from mlff.models import save_model
from mlff.uq.committee import Committee
from mlff.uq.io import load_model, save_committee
from tests import helpers

dftd3_ase = pytest.importorskip("dftd3.ase")


def _potential(seed: int = 0, **settings):
    potential = helpers.build_potential("schnet", seed=seed).double()
    if settings:
        potential.metadata = {"dispersion": D3Settings(**settings).to_metadata()}
    return potential


def _d3(atoms, method="d3bj"):
    atoms = atoms.copy()
    atoms.calc = dftd3_ase.DFTD3(method="pbe", damping=method)
    stress = atoms.get_stress() if atoms.pbc.all() else None
    return atoms.get_potential_energy(), atoms.get_forces(), stress


@pytest.mark.parametrize("make", [helpers.ethanol, helpers.copper], ids=["molecule", "periodic"])
def test_results_are_the_model_plus_simple_dftd3(make, tmp_path):
    path = save_model(_potential(method="d3bj", functional="pbe"), tmp_path / "model.mlff")
    atoms = make()
    bare = MLFFCalculator(path, dispersion=False)
    with_d3 = MLFFCalculator(path)
    energy, forces, stress = _d3(atoms)
    assert with_d3.get_potential_energy(atoms) == pytest.approx(
        bare.get_potential_energy(atoms) + energy, abs=1e-9)
    np.testing.assert_allclose(with_d3.get_forces(atoms), bare.get_forces(atoms) + forces,
                               rtol=0, atol=1e-9)
    energies = with_d3.get_potential_energies(atoms)
    assert energies.sum() == pytest.approx(with_d3.get_potential_energy(atoms), abs=1e-9)
    if atoms.pbc.all():
        np.testing.assert_allclose(with_d3.get_stress(atoms), bare.get_stress(atoms) + stress,
                                   rtol=0, atol=1e-10)
    assert abs(energy) > 1e-3


def test_committee_members_get_the_same_d3(tmp_path):
    members = [_potential(seed, method="d3zero", functional="pbe") for seed in (0, 1)]
    committee = Committee(members)
    committee.metadata = {"dispersion": members[0].metadata["dispersion"]}
    path = save_committee(committee, tmp_path / "committee.mlff")
    atoms = helpers.copper()
    with_d3, bare = MLFFCalculator(load_model(path)), MLFFCalculator(path, dispersion=False)
    energy, _, _ = _d3(atoms, "d3zero")
    with_d3.get_potential_energy(atoms), bare.get_potential_energy(atoms)
    np.testing.assert_allclose(with_d3.results["member_energies"],
                               bare.results["member_energies"] + energy, atol=1e-9)
    assert with_d3.results["max_forces_std"] == pytest.approx(bare.results["max_forces_std"])


def test_asking_d3_of_a_model_trained_without_it_is_refused(tmp_path):
    path = save_model(_potential(), tmp_path / "plain.mlff")
    with pytest.raises(ConfigError, match="trained without D3 dispersion.*count dispersion twice"):
        MLFFCalculator(path, dispersion=True)
    assert MLFFCalculator(path).dispersion is None
