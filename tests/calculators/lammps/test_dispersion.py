"""D3 in LAMMPS: its dispersion/d3 equals simple-dftd3, and a deployed model trained on
labels minus D3 runs in LAMMPS (pair_style hybrid/overlay) as in the ASE calculator."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from mlff.calculators.ase import MLFFCalculator
from mlff.calculators.lammps import deploy as D
from mlff.calculators.lammps.dispersion import LAMMPS_DAMPING, lammps_dispersion, lammps_functionals
from mlff.calculators.lammps.runtime import create_lammps
from mlff.data.dispersion import D3, D3Settings
from mlff.errors import ConfigError
from tests import helpers
from tests.calculators.lammps.conftest import tiny_potential
from tests.calculators.lammps.support import run_in_process, write_structure

pytest.importorskip("dftd3")
pytest.importorskip("lammps")


def _d3_in_lammps(lmp, settings: D3Settings, symbols: list[str], natoms: int):
    """Energy (eV) and forces (eV/Å, by atom ID) of LAMMPS's dispersion/d3 alone."""
    pair = lammps_dispersion(settings, symbols)
    lmp.commands_string("\n".join([
        f"pair_style {pair['pair_style']}",
        f"pair_coeff * * {' '.join(symbols)}",
        "run 0",
    ]))
    ids = np.asarray(lmp.numpy.extract_atom("id"))[:natoms]
    forces = np.asarray(lmp.numpy.extract_atom("f"))[:natoms][np.argsort(ids)].copy()
    return lmp.get_thermo("pe"), forces


def _lammps_with(atoms: Atoms, symbols: list[str], directory):
    data = write_structure(atoms, directory, symbols)
    lmp = create_lammps()
    boundary = " ".join("p" if p else "s" for p in atoms.pbc)
    lmp.commands_string("\n".join([
        "units metal", "atom_style atomic", f"boundary {boundary}", f"read_data {data}",
        "neigh_modify one 40000 page 400000",
        "thermo_modify format float %.17g",
    ]))
    return lmp


@pytest.mark.parametrize("method", sorted(LAMMPS_DAMPING))
def test_every_lammps_functional_equals_simple_dftd3(method, tmp_path):
    """Each functional mlff maps to LAMMPS gets the same parameters there: the energy and
    forces of a molecule agree for every one of them."""
    atoms = helpers.ethanol()
    symbols = ["H", "C", "O"]
    lmp = _lammps_with(atoms, symbols, tmp_path)
    frame = _frame(lmp, atoms, symbols)
    wrong = []
    for functional in sorted(lammps_functionals(method)):
        # a molecule 5 Å across: short cutoffs give all of D3, and fast LAMMPS setups
        settings = D3Settings(method=method, functional=functional, cutoff=12.0, cn_cutoff=12.0)
        try:
            energy, forces = _d3_in_lammps(lmp, settings, symbols, len(atoms))
        except Exception as exc:  # the lammps module raises plain Exception
            wrong.append(f"{functional}: {exc}")
            lmp.close()
            lmp = _lammps_with(atoms, symbols, tmp_path)
            continue
        ref = D3(settings).compute(frame.numbers, frame.positions, None, frame.pbc)
        if abs(energy - ref.energy) / len(atoms) > 1e-6 or np.abs(forces - ref.forces).max() > 1e-5:
            wrong.append(f"{functional}: {energy - ref.energy:.3g} eV")
    lmp.close()
    assert wrong == []


def _frame(lmp, atoms: Atoms, symbols: list[str]) -> Atoms:
    """``atoms`` as LAMMPS holds them (its frame, ordered by ID)."""
    natoms = len(atoms)
    ids = np.asarray(lmp.numpy.extract_atom("id"))[:natoms]
    order = np.argsort(ids)
    types = np.asarray(lmp.numpy.extract_atom("type"))[:natoms][order]
    x = np.asarray(lmp.numpy.extract_atom("x"))[:natoms][order].copy()
    (xlo, ylo, zlo), (xhi, yhi, zhi), xy, yz, xz = lmp.extract_box()[:5]
    cell = np.array([[xhi - xlo, 0, 0], [xy, yhi - ylo, 0], [xz, yz, zhi - zlo]])
    frame = Atoms([symbols[t - 1] for t in types], positions=x, cell=cell, pbc=atoms.pbc)
    if not atoms.pbc.any():
        frame.cell[:] = 0.0
    return frame


def _salt() -> Atoms:
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    atoms.rattle(0.05, seed=4)
    return atoms


@pytest.mark.parametrize("method", ["d3bj", "d3zero"])
@pytest.mark.parametrize("make", [helpers.ethanol, _salt], ids=["molecule", "periodic"])
def test_lammps_d3_equals_simple_dftd3(method, make, tmp_path):
    atoms = make()
    symbols = sorted(set(atoms.get_chemical_symbols()))
    lmp = _lammps_with(atoms, symbols, tmp_path)
    frame = _frame(lmp, atoms, symbols)
    settings = D3Settings(method=method, functional="pbe")
    energy, forces = _d3_in_lammps(lmp, settings, symbols, len(atoms))
    lmp.close()
    ref = D3(settings).compute(frame.numbers, frame.positions, frame.cell[:], frame.pbc)
    assert abs(energy - ref.energy) / len(atoms) < 1e-6
    np.testing.assert_allclose(forces, ref.forces, rtol=0, atol=1e-5)


def _with_d3(potential, **settings):
    potential.metadata = {"dispersion": D3Settings(**settings).to_metadata()}
    return potential


def test_deployed_d3_model_in_lammps_equals_the_ase_calculator(plugin, tmp_path):
    """pair_style hybrid/overlay mlff + dispersion/d3 as `mlff deploy` writes it, on a
    periodic cell in float64: forces equal the ASE calculator's (model + simple-dftd3)."""
    potential = _with_d3(tiny_potential("painn"), method="d3bj", functional="pbe")
    atoms = helpers.copper().repeat((2, 1, 1))
    result = D.deploy(potential, tmp_path / "deployed", structure=atoms, build=False,
                      format="torchscript")
    text = result.input.read_text()
    assert "pair_style      hybrid/overlay mlff dispersion/d3 bj pbe 31.75063" in text
    assert "pair_coeff      * * dispersion/d3 H C O Cu" in text
    lines = [line.split("#")[0].strip() for line in text.splitlines()]
    pair = [line.replace(f" {D.MODEL_NAME} ", f" {result.model} ") for line in lines
            if line.split()[:1] in (["pair_style"], ["pair_coeff"])
            or line.split()[:2] == ["neigh_modify", "one"]]
    assert len(pair) == 4
    out = run_in_process(result.model, atoms, ["H", "C", "O", "Cu"], tmp_path,
                         extra="\n".join(pair))  # the deployed input's pair lines win
    frame = out["atoms"]
    frame.calc = MLFFCalculator(potential)
    np.testing.assert_allclose(out["forces"], frame.get_forces(), rtol=0, atol=1e-6)
    assert out["energy"] == pytest.approx(frame.get_potential_energy(), abs=1e-6 * len(frame))
    np.testing.assert_allclose(out["stress"], frame.get_stress(voigt=False), rtol=0, atol=1e-7)
    bare = MLFFCalculator(potential, dispersion=False)
    assert abs(bare.get_potential_energy(frame) - frame.get_potential_energy()) > 1e-3
    out["lmp"].close()


@pytest.mark.parametrize(("settings", "reason"), [
    ({"method": "d3bj", "functional": "pbe", "three_body": True}, "no three-body"),
    ({"method": "d3bj", "parameters": {"s8": 1.0, "a1": 0.4, "a2": 5.0}}, "not custom parameters"),
    ({"method": "d3bj", "functional": "pbe", "parameters": {"s8": 1.0}}, "not the published pbe"),
    ({"method": "d3zero", "functional": "scan"}, "no d3zero parameters for 'scan'"),
])
def test_deploy_refuses_d3_that_lammps_cannot_compute(settings, reason, tmp_path):
    potential = _with_d3(tiny_potential("schnet"), **settings)
    with pytest.raises(ConfigError, match=reason):
        D.deploy(potential, tmp_path / "out", structure=helpers.copper(), build=False, check=False,
                 format="torchscript")
    assert not (tmp_path / "out").exists()
