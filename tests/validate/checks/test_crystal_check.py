"""Crystal properties: EMT judged against itself must agree exactly, and each property
must equal an independent computation (ASE's EOS fit, a cell relaxation, direct energy
differences) and EMT's known values for copper."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from ase.units import GPa

from mlff.errors import ConfigError, SimulationError
from mlff.validate import eos
from mlff.validate.checks import crystal

OPTIONS = crystal.CrystalOptions(vacancy_min_atoms=32, surfaces=((1, 1, 1),), surface_layers=5)


@pytest.fixture(scope="module")
def emt_result(tmp_path_factory):
    return crystal.run(EMT(), bulk("Cu", "fcc", a=3.6), tmp_path_factory.mktemp("crystal"),
                       reference=EMT(), options=OPTIONS)


def test_emt_against_itself_agrees_exactly(emt_result):
    assert emt_result.headlines and all(h.passed for h in emt_result.headlines)
    assert all(h.deviation == 0.0 for h in emt_result.headlines)
    names = {h.quantity for h in emt_result.headlines}
    assert {"lattice constant a", "bulk modulus B0", "elastic constant C11",
            "vacancy formation energy (Cu)", "surface energy (111)"} <= names


def test_lattice_constant_and_bulk_modulus_are_emts(emt_result):
    model = emt_result.summary["model"]
    # EMT's copper: a0 = 3.590 Å, B0 = 134 GPa
    assert model["lattice_A"]["a"] == pytest.approx(3.5898, abs=2e-4)
    assert model["bulk_modulus_GPa"] == pytest.approx(134.3, abs=0.5)
    # independently: a full cell relaxation, and ASE's own Birch-Murnaghan fit
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.calc = EMT()
    BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-5)
    assert model["lattice_A"]["a"] == pytest.approx(3.6 * (atoms.get_volume() /
                                                           bulk("Cu", a=3.6).get_volume())
                                                    ** (1 / 3), rel=2e-5)
    fit = EquationOfState(model["eos_volumes_A3_per_atom"], model["eos_energies_eV_per_atom"],
                          eos="birchmurnaghan")
    v0, _, b0 = fit.fit()
    assert model["volume_per_atom_A3"] == pytest.approx(v0, rel=1e-6)
    assert model["bulk_modulus_GPa"] == pytest.approx(b0 / GPa, rel=1e-4)


def test_elastic_constants_are_consistent_with_the_bulk_modulus(emt_result):
    model = emt_result.summary["model"]
    assert model["C11"] > model["C12"] > 0 and model["C44"] > 0
    assert (model["C11"] + 2 * model["C12"]) / 3 == pytest.approx(model["bulk_modulus_GPa"],
                                                                  rel=0.01)
    constants = np.asarray(model["elastic_constants_GPa"])
    np.testing.assert_allclose(constants, constants.T, atol=1e-6)


def test_vacancy_energy_equals_a_direct_computation(emt_result):
    model = emt_result.summary["model"]
    row = model["vacancy"]["Cu"]
    a = model["lattice_A"]["a"]
    perfect = bulk("Cu", "fcc", a=a).repeat(4)  # the 64-atom supercell the check uses
    assert row["supercell_atoms"] == len(perfect)
    perfect.calc = EMT()
    e_perfect = perfect.get_potential_energy()
    defect = perfect.copy()
    del defect[0]
    defect.calc = EMT()
    unrelaxed = defect.get_potential_energy() - (63 / 64) * e_perfect
    assert row["unrelaxed_eV"] == pytest.approx(unrelaxed, abs=1e-6)
    assert 0.9 < row["relaxed_eV"] <= row["unrelaxed_eV"]


def test_surface_energy_is_positive_and_below_its_unrelaxed_value(emt_result):
    row = emt_result.summary["model"]["surfaces"]["111"]
    assert 0.5 < row["relaxed_J_m2"] <= row["unrelaxed_J_m2"] + 1e-9


def test_unrelaxed_defects_are_compared_when_relaxation_is_off(tmp_path, emt_result):
    options = crystal.CrystalOptions(parts=("eos", "vacancy", "surfaces"), vacancy_min_atoms=32,
                                     surfaces=((1, 1, 1),), surface_layers=5,
                                     relax_defects=False)
    result = crystal.run(EMT(), bulk("Cu", "fcc", a=3.6), tmp_path, reference=EMT(),
                         options=options)
    model = result.summary["model"]
    relaxed = emt_result.summary["model"]
    assert "relaxed_eV" not in model["vacancy"]["Cu"]
    assert model["vacancy"]["Cu"]["unrelaxed_eV"] == pytest.approx(
        relaxed["vacancy"]["Cu"]["unrelaxed_eV"], abs=1e-9)
    assert model["surfaces"]["111"]["unrelaxed_J_m2"] == pytest.approx(
        relaxed["surfaces"]["111"]["unrelaxed_J_m2"], abs=1e-9)
    names = {h.quantity: h for h in result.headlines}
    assert names["vacancy formation energy (Cu), unrelaxed"].model == pytest.approx(
        model["vacancy"]["Cu"]["unrelaxed_eV"])
    assert "surface energy (111), unrelaxed" in names


def test_birch_murnaghan_fit_recovers_its_parameters():
    volumes = np.linspace(10.0, 13.0, 9)
    energies = eos.birch_murnaghan(volumes, -3.5, 11.6, 140.0 * GPa, 4.8)
    fit = eos.fit_birch_murnaghan(volumes, energies)
    assert (fit.e0, fit.v0, fit.bulk_modulus_GPa, fit.bulk_modulus_derivative) == pytest.approx(
        (-3.5, 11.6, 140.0, 4.8), rel=1e-6)
    with pytest.raises(SimulationError, match="no minimum"):
        eos.fit_birch_murnaghan(volumes, -energies)


def test_model_without_reference_and_bad_inputs(tmp_path):
    options = crystal.CrystalOptions(parts=("eos",))
    result = crystal.run(EMT(), bulk("Cu", "fcc", a=3.6), tmp_path, options=options)
    assert all(h.reference is None and h.passed is None for h in result.headlines)
    assert "reference" not in result.summary
    with pytest.raises(ConfigError, match="not periodic"):
        crystal.run(EMT(), molecule("H2O"), tmp_path)
    with pytest.raises(ConfigError, match="unknown part"):
        crystal.run(EMT(), bulk("Cu"), tmp_path, options=crystal.CrystalOptions(parts=("x",)))


def test_conventional_cell_of_a_slightly_displaced_crystal_is_the_cubic_one():
    # a DFT-relaxed diamond cell keeps its atoms a few mÅ off their sites; the slabs must
    # still be cut from the 8-atom cube, not from a 4-atom tetragonal cell of lower symmetry
    atoms = bulk("Si", "diamond", a=5.464)
    atoms.positions[1, 0] += 0.003
    conventional = crystal.conventional_cell(atoms)
    assert len(conventional) == 8
    np.testing.assert_allclose(conventional.cell.lengths(), 5.464, atol=1e-6)
    np.testing.assert_allclose(conventional.cell.angles(), 90.0, atol=1e-6)
    assert len(crystal.conventional_cell(atoms, symprec=1e-3)) == 4  # the old tolerance
