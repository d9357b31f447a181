"""D3 through mlff.data.dispersion equals simple-dftd3's own ASE calculator; bad settings."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule
from pydantic import ValidationError

from mlff.data.dispersion import D3, D3Settings, dispersion_settings
from mlff.errors import ConfigError, DataError, ModelFileError

dftd3_ase = pytest.importorskip("dftd3.ase")


def _molecule():
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=1)
    return atoms


def _crystal():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.rattle(0.05, seed=2)
    atoms.set_cell(atoms.cell[:] @ np.array([[1.0, 0.02, 0.0], [0.0, 1.0, 0.03], [0.0, 0.0, 0.98]]),
                   scale_atoms=True)  # triclinic
    return atoms


def _reference(atoms, method: str, tweaks: dict | None = None, cutoffs: dict | None = None):
    """simple-dftd3's ASE calculator by functional name (two-body) or explicit parameters."""
    calc = (dftd3_ase.DFTD3(method="pbe", damping=method) if tweaks is None
            else dftd3_ase.DFTD3(damping=method, params_tweaks=tweaks,
                                 realspace_cutoff=cutoffs or {}))
    atoms = atoms.copy()
    atoms.calc = calc
    stress = atoms.get_stress(voigt=False) if atoms.pbc.all() else None
    return atoms.get_potential_energy(), atoms.get_forces(), stress


@pytest.mark.parametrize("method", ["d3bj", "d3zero", "d3bjm", "d3zerom"])
@pytest.mark.parametrize("make", [_molecule, _crystal], ids=["molecule", "periodic"])
def test_two_body_equals_simple_dftd3_by_functional_name(method, make):
    atoms = make()
    d3 = D3(D3Settings(method=method, functional="pbe"))
    got = d3.compute(atoms.numbers, atoms.positions, atoms.cell[:], atoms.pbc, energies=True)
    energy, forces, stress = _reference(atoms, method)
    assert abs(got.energy - energy) / len(atoms) < 1e-10
    np.testing.assert_allclose(got.forces, forces, rtol=0, atol=1e-10)
    assert got.energies.sum() == pytest.approx(got.energy, abs=1e-10)
    if atoms.pbc.all():
        np.testing.assert_allclose(got.stress, stress, rtol=0, atol=1e-12)
    else:
        assert got.stress is None
    assert energy < 0 and np.abs(forces).max() > 1e-4  # a real, non-trivial D3


@pytest.mark.parametrize("make", [_molecule, _crystal], ids=["molecule", "periodic"])
def test_three_body_term_equals_simple_dftd3_with_s9(make):
    atoms = make()
    # triples within 12 Å (default 21 Å) keep the periodic case fast; the same for both
    settings = D3Settings(method="d3bj", functional="pbe", three_body=True,
                          three_body_cutoff=12.0).resolved()
    assert settings.parameters["s9"] == 1.0
    got = D3(settings).compute(atoms.numbers, atoms.positions, atoms.cell[:], atoms.pbc)
    tweaks = {k: v for k, v in settings.parameters.items()}
    energy, forces, stress = _reference(atoms, "d3bj", tweaks, {"disp3": 12.0})
    assert abs(got.energy - energy) / len(atoms) < 1e-10
    np.testing.assert_allclose(got.forces, forces, rtol=0, atol=1e-10)
    two_body = D3(D3Settings(method="d3bj", functional="pbe")).compute(
        atoms.numbers, atoms.positions, atoms.cell[:], atoms.pbc)
    assert abs(got.energy - two_body.energy) > 1e-6  # the ATM term is there


def test_forces_and_stress_are_derivatives_of_the_energy():
    atoms = _crystal()
    d3 = D3(D3Settings(method="d3zero", functional="b3lyp"))
    got = d3.compute(atoms.numbers, atoms.positions, atoms.cell[:], atoms.pbc)
    h = 1e-5
    for atom, axis in ((0, 0), (5, 2)):
        plus, minus = atoms.positions.copy(), atoms.positions.copy()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        e_plus = d3.compute(atoms.numbers, plus, atoms.cell[:], atoms.pbc).energy
        e_minus = d3.compute(atoms.numbers, minus, atoms.cell[:], atoms.pbc).energy
        assert got.forces[atom, axis] == pytest.approx(-(e_plus - e_minus) / (2 * h), abs=1e-7)
    strain = np.eye(3)
    strain[0, 1] = strain[1, 0] = h / 2
    e_plus = d3.compute(atoms.numbers, atoms.positions @ strain, atoms.cell[:] @ strain, atoms.pbc).energy
    strain[0, 1] = strain[1, 0] = -h / 2
    e_minus = d3.compute(atoms.numbers, atoms.positions @ strain, atoms.cell[:] @ strain, atoms.pbc).energy
    assert got.stress[0, 1] == pytest.approx((e_plus - e_minus) / (2 * h) / atoms.get_volume(), abs=1e-9)


def test_custom_parameters_replace_the_functional():
    atoms = _molecule()
    params = {"s6": 1.0, "s8": 0.5, "a1": 0.4, "a2": 5.0}
    settings = D3Settings(method="d3bj", parameters=params).resolved()
    assert settings.parameters == {**params, "alp": 14.0, "s9": 0.0}
    got = D3(settings).compute(atoms.numbers, atoms.positions, None, atoms.pbc)
    energy, forces, _ = _reference(atoms, "d3bj", {**params, "s9": 0.0})
    assert got.energy == pytest.approx(energy, abs=1e-12)


def test_metadata_round_trip_keeps_the_resolved_parameters():
    settings = D3Settings(method="D3BJ", functional="PBE")
    stored = settings.to_metadata()
    assert stored["method"] == "d3bj" and stored["functional"] == "pbe"
    assert stored["parameters"] == {"a1": 0.4289, "a2": 4.4407, "alp": 14.0, "s6": 1.0,
                                    "s8": 0.7875, "s9": 0.0}
    assert stored["implementation"].startswith("simple-dftd3 ")
    again = dispersion_settings({"dispersion": stored})
    assert again.resolved() == settings.resolved()
    assert dispersion_settings({}) is None
    assert "d3bj (pbe; " in again.describe()


def test_unknown_method_is_refused():
    with pytest.raises(ValidationError, match="unknown D3 method 'd4'.*d3bj, d3zero"):
        D3Settings(method="d4", functional="pbe")


def test_unknown_functional_names_close_ones():
    with pytest.raises(ConfigError, match="no d3bj parameters for the functional 'pbee'.*Did you mean pbe"):
        D3Settings(method="d3bj", functional="pbee").resolved()


def test_missing_and_unknown_parameters_are_refused():
    with pytest.raises(ConfigError, match="a1 a2 missing"):
        D3Settings(method="d3bj", parameters={"s8": 1.0}).resolved()
    with pytest.raises(ConfigError, match="rs6 is not a d3bj damping parameter"):
        D3Settings(method="d3bj", functional="pbe", parameters={"rs6": 1.0}).resolved()


def test_element_without_d3_parameters_names_the_atom():
    d3 = D3(D3Settings(method="d3bj", functional="pbe"))
    numbers = np.array([1, 95])  # americium: beyond D3's reference data
    with pytest.raises(DataError, match=r"train.xyz:3: atom 1 is Am, which has no D3 parameters"):
        d3.compute(numbers, np.array([[0.0, 0, 0], [2.0, 0, 0]]), None, np.zeros(3, bool),
                   where="train.xyz:3")


def test_a_damaged_dispersion_entry_is_a_model_file_error():
    with pytest.raises(ModelFileError, match="model.mlff: the 'dispersion' entry is not valid"):
        dispersion_settings({"dispersion": {"method": "d3xx"}}, "model.mlff")


def test_a_reused_structure_equals_a_fresh_one_after_moves_and_cell_changes():
    atoms = _crystal()
    settings = D3Settings(method="d3bj", functional="pbe")
    d3 = D3(settings)
    d3.compute(atoms.numbers, atoms.positions, atoms.cell[:], atoms.pbc)
    kept = d3._model
    cell = atoms.cell[:] * 1.01
    positions = atoms.positions * 1.01 + 0.02
    reused = d3.compute(atoms.numbers, positions, cell, atoms.pbc)
    assert d3._model is kept  # updated in place, as in MD
    fresh = D3(settings).compute(atoms.numbers, positions, cell, atoms.pbc)
    assert reused.energy == pytest.approx(fresh.energy, abs=1e-12)
    np.testing.assert_allclose(reused.stress, fresh.stress, atol=1e-14)
