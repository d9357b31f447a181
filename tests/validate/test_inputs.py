"""Inputs and options of a validation run from command-line style strings."""

from __future__ import annotations

import ase.io
import pytest
from ase.build import molecule

from mlff.errors import ConfigError, DataError
from mlff.validate.inputs import (
    apply_overrides,
    build_inputs,
    crystal_from_spec,
    default_crystal,
    labelled_set,
    split_frame,
)
from mlff.validate.runner import ValidationOptions
from tests import helpers


@pytest.fixture
def molecules_file(tmp_path):
    frames = [helpers.with_random_labels(helpers.ethanol(seed=s), seed=s) for s in range(3)]
    path = tmp_path / "mols.xyz"
    ase.io.write(path, frames)
    return path


def test_frames_sets_and_crystals(tmp_path, molecules_file):
    assert split_frame("a.xyz@3") == ("a.xyz", 3)
    assert split_frame("a.xyz") == ("a.xyz", 0)
    assert split_frame("a.xyz@-1") == ("a.xyz", -1)
    named = labelled_set(f"md300={molecules_file}")
    assert named.name == "md300" and len(named) == 3
    assert labelled_set(str(molecules_file)).name == "mols"
    cu = crystal_from_spec("Cu:fcc:3.61")
    assert cu.cell.get_bravais_lattice().a == pytest.approx(3.61)
    assert len(crystal_from_spec("Mg")) == 2  # hcp
    with pytest.raises(ConfigError, match="not a number"):
        crystal_from_spec("Cu:fcc:big")
    with pytest.raises(ConfigError, match="not periodic"):
        crystal_from_spec(f"{molecules_file}@0")
    with pytest.raises(DataError):
        crystal_from_spec(str(tmp_path / "missing.xyz"))
    assert default_crystal([29]).get_chemical_formula() == "Cu"
    assert default_crystal([1, 6]) is None


def test_defaults_come_from_the_data(molecules_file):
    inputs, notes = build_inputs(data=[str(molecules_file)], species=(1, 6, 8))
    assert inputs.molecule.get_chemical_formula() == "C2H6O"
    assert inputs.structure.get_chemical_formula() == "C2H6O" and inputs.crystal is None
    assert any("molecule: the first frame" in n for n in notes)
    inputs, notes = build_inputs(species=(29,), supercell=(1, 1, 2))
    assert inputs.crystal.get_chemical_formula() == "Cu"
    assert len(inputs.structure) == 125 * 2  # the crystal to >= 100 atoms, then 1x1x2
    with pytest.raises(ConfigError, match="supercell"):
        build_inputs(species=(29,), supercell=(1, 0, 1))


def test_overrides():
    options = ValidationOptions()
    apply_overrides(options, ["md.time_ps=3", "crystal.surfaces=[[1,1,1]]",
                              "cost.min_speedup=1000", "molecule.bonds=[[2, 8]]"])
    assert options.md.time_ps == 3.0 and isinstance(options.md.time_ps, float)
    assert options.crystal.surfaces == ((1, 1, 1),)
    assert options.cost.min_speedup == 1000
    options.molecule.check(molecule("CH3CH2OH"))
    for bad, message in (("md.time=3", "no option 'time'"), ("vibes.x=1", "unknown check"),
                         ("md.time_ps", "CHECK.OPTION=VALUE"), ("md.time_ps=fast", "a number")):
        with pytest.raises(ConfigError, match=message):
            apply_overrides(ValidationOptions(), [bad])
