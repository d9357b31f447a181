"""Phonons through phonopy against ASE's independent finite-displacement implementation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.phonons import Phonons
from ase.units import _e, _hplanck

from mlff.errors import ConfigError
from mlff.validate.checks import phonons
from mlff.validate.eos import equation_of_state

THZ_IN_EV = _hplanck * 1e12 / _e


@pytest.fixture(scope="module")
def emt_result(tmp_path_factory):
    options = phonons.PhononOptions(points=60, mesh=(8, 8, 8))
    folder = tmp_path_factory.mktemp("phonons")
    return phonons.run(EMT(), bulk("Cu", "fcc", a=3.6), folder, reference=EMT(),
                       options=options), folder


def test_emt_against_itself_agrees_exactly(emt_result):
    result, _ = emt_result
    quantities = [h.quantity for h in result.headlines]
    assert "phonon frequencies at X" in quantities and "phonon frequencies at L" in quantities
    assert all(h.passed and h.deviation == 0.0 for h in result.headlines)


def test_frequencies_at_x_and_l_equal_ase_phonons(emt_result, tmp_path):
    result, _ = emt_result
    _, crystal = equation_of_state(bulk("Cu", "fcc", a=3.6), EMT())
    ase_phonons = Phonons(crystal, EMT(), supercell=(4, 4, 4), delta=0.01,
                          name=str(tmp_path / "ase-phonons"))
    ase_phonons.run()
    ase_phonons.read(acoustic=True)
    points = crystal.cell.bandpath().special_points
    expected = ase_phonons.band_structure([points["X"], points["L"]]) / THZ_IN_EV
    found = result.summary["model"]["frequencies_at_points_THz"]
    np.testing.assert_allclose(np.sort(found["X"]), np.sort(expected[0]), rtol=2e-3)
    np.testing.assert_allclose(np.sort(found["L"]), np.sort(expected[1]), rtol=2e-3)
    # EMT copper: transverse and longitudinal branches at X near 5.5 and 8.1 THz
    assert found["X"] == pytest.approx([5.53, 5.53, 8.14], abs=0.02)


def test_figure_data_holds_the_dispersion_and_dos(emt_result):
    _, folder = emt_result
    data = json.loads((folder / "phonons-dispersion.json").read_text())["data"]
    frequencies = np.array(data["model"]["frequencies_THz"])
    assert frequencies.shape == (len(data["model"]["path_x"]), 3)
    assert data["labels"][0] == "G" and "X" in data["labels"]
    dos_x, dos = np.array(data["model"]["dos_frequencies_THz"]), np.array(data["model"]["dos"])
    # the total DOS of a 1-atom cell integrates to its 3 branches
    assert np.trapezoid(dos, dos_x) == pytest.approx(3.0, rel=0.05)


def test_rejects_a_molecule(tmp_path):
    with pytest.raises(ConfigError, match="not periodic"):
        phonons.run(EMT(), molecule("H2O"), tmp_path)
