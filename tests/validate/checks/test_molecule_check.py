"""Molecule check: scan geometries, default bonds and dihedrals, and normal modes against
ASE's own finite-difference vibrations."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import CalculationFailed
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.vibrations import Vibrations

from mlff.errors import ConfigError
from mlff.validate.checks import molecule as mol


@pytest.fixture(scope="module")
def ethanol():
    return molecule("CH3CH2OH")


def test_default_bonds_and_dihedrals_of_ethanol(ethanol):
    graph = mol.bond_graph(ethanol)
    symbols = ethanol.get_chemical_symbols()
    pairs = {tuple(sorted((symbols[i], symbols[j]))) for i, j in mol.default_bonds(ethanol, graph)}
    assert pairs == {("C", "C"), ("C", "O"), ("C", "H"), ("H", "O")}
    axes = {tuple(sorted((symbols[b], symbols[c]))) for _, b, c, _ in
            mol.default_dihedrals(ethanol, graph)}
    assert axes == {("C", "C"), ("C", "O")}  # the two rotors; C-H and O-H are terminal


def test_bond_scan_moves_one_fragment_along_the_bond(ethanol):
    graph = mol.bond_graph(ethanol)
    c0, c1 = (i for i, s in enumerate(ethanol.get_chemical_symbols()) if s == "C")
    options = mol.MoleculeOptions(bond_range=(0.9, 2.0), bond_points=4)
    lengths, geometries = mol.bond_scan(ethanol, graph, (c0, c1), options)
    moving = mol.side(graph, c1, c0)
    for r, atoms in zip(lengths, geometries, strict=True):
        assert atoms.get_distance(c0, c1) == pytest.approx(r)
        shift = atoms.positions - ethanol.positions
        assert np.allclose(shift[[k for k in range(len(atoms)) if k not in moving]], 0.0)
        assert np.allclose(shift[list(moving)], shift[c1])  # rigid
    assert lengths[-1] == pytest.approx(2.0 * ethanol.get_distance(c0, c1))


def test_dihedral_scan_sets_the_angles(ethanol):
    graph = mol.bond_graph(ethanol)
    quad = mol.default_dihedrals(ethanol, graph)[0]
    angles, geometries = mol.dihedral_scan(ethanol, graph, quad, 90.0)
    assert len(geometries) == 4
    for angle, atoms in zip(angles, geometries, strict=True):
        assert atoms.get_dihedral(*quad) == pytest.approx(angle % 360.0, abs=1e-6)
        # bond lengths are unchanged by a rigid rotation
        assert atoms.get_distance(quad[1], quad[2]) == pytest.approx(
            ethanol.get_distance(quad[1], quad[2]))


def test_emt_against_itself(tmp_path, ethanol):
    options = mol.MoleculeOptions(relax_start=False, bond_points=5, dihedral_step_deg=90.0)
    result = mol.run(EMT(), ethanol, tmp_path, reference=EMT(), options=options)
    assert len(result.summary["bonds"]) == 4 and len(result.summary["dihedrals"]) == 2
    assert all(h.passed for h in result.headlines)
    assert result.summary["modes"]["mae_cm"] == 0.0
    assert {f.png.name for f in result.figures} == {"molecule-bonds.png",
                                                    "molecule-dihedrals.png",
                                                    "molecule-modes.png"}


def test_normal_modes_equal_ase_vibrations(tmp_path):
    water = molecule("H2O")
    options = mol.MoleculeOptions(relax_fmax=1e-4)
    frequencies, minimum, converged = mol.normal_modes(water, EMT(), options)
    assert converged and len(frequencies) == 3
    minimum.calc = EMT()
    vibrations = Vibrations(minimum, delta=0.01, name=str(tmp_path / "vib"))
    vibrations.run()
    expected = np.sort(vibrations.get_frequencies().real)[-3:]
    np.testing.assert_allclose(frequencies, expected, rtol=1e-6, atol=0.5)


def test_bad_inputs(tmp_path, ethanol):
    with pytest.raises(ConfigError, match="not distinct"):
        mol.run(EMT(), ethanol, tmp_path, options=mol.MoleculeOptions(bonds=[(0, 99)]))
    with pytest.raises(ConfigError, match="periodic"):
        mol.run(EMT(), bulk("Cu"), tmp_path)
    with pytest.raises(ConfigError, match="bond_range"):
        mol.run(EMT(), ethanol, tmp_path, options=mol.MoleculeOptions(bond_range=(1.2, 2.0)))


class StretchFailingEMT(EMT):
    """EMT that fails, as an SCF can, once the O-H bond (atoms 2, 3 of ASE's ethanol) is
    stretched beyond 2.2 Å."""

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        if atoms is not None and atoms.get_distance(2, 3) > 2.2:
            raise CalculationFailed("SCF did not converge")
        super().calculate(atoms, properties, system_changes)


def test_failed_reference_points_are_left_out(tmp_path, ethanol):
    options = mol.MoleculeOptions(parts=("bonds", "modes"), bonds=[(2, 3)], relax_start=False,
                                  bond_range=(0.9, 3.0), bond_points=6, relax_steps=2)
    reference = StretchFailingEMT()
    result = mol.run(EMT(), ethanol, tmp_path, reference=reference, options=options)
    (label,) = result.summary["bonds"]
    row = result.summary["bonds"][label]
    ref = np.asarray(row["energies_eV"]["reference"])
    lengths = np.asarray(row["x"])
    assert np.isnan(ref[lengths > 2.2]).all() and np.isfinite(ref[lengths <= 2.2]).all()
    assert row["points_compared"] == int((lengths <= 2.2).sum())
    # energies are relative to the unstretched molecule, not to the first (compressed) point
    start = ethanol.copy()
    start.calc = EMT()
    stretched = ethanol.copy()
    stretched.positions[3] += (lengths[0] / ethanol.get_distance(2, 3) - 1.0) * (
        ethanol.positions[3] - ethanol.positions[2])
    stretched.calc = EMT()
    expected = stretched.get_potential_energy() - start.get_potential_energy()
    assert row["energies_eV"]["model"][0] == pytest.approx(expected, abs=1e-9)
    # compared at the longest stretch both computed: EMT against EMT there
    assert row["model_value_eV"] == pytest.approx(row["reference_value_eV"])
    assert any("calculations failed" in note and "SCF did not converge" in note
               for note in result.notes)
    assert result.status == "ok"


def test_failed_normal_modes_are_reported_not_raised(tmp_path):
    lithium = Atoms("Li3", positions=[(0, 0, 0), (0, 0, 1.12), (0, 1.0, 0.5)])  # no EMT for Li
    options = mol.MoleculeOptions(parts=("modes",), relax_start=False, relax_steps=5)
    result = mol.run(LennardJones(), lithium, tmp_path, reference=EMT(), options=options)
    assert result.status == "ok" and result.passed is False
    assert any("normal modes could not be computed" in note for note in result.notes)
