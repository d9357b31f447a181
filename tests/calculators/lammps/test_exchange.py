"""pair_style mlff with layer-wise evaluation: ghosts to one cutoff, node features exchanged
between MPI ranks after every layer; equal to the serial run in float64."""

from __future__ import annotations

import pytest

from tests.calculators.lammps.conftest import SYMBOLS
from tests.calculators.lammps.support import read_dump, run_subprocess
from tests.calculators.lammps.test_pair_style import (
    MD,
    STRUCTURES as STRUCTURES_ELSEWHERE,
    UNCERTAINTY,
    assert_close,
    bulk_copper,
    committee_model,  # noqa: F401 (a fixture)
    long_cell,
)

EXCHANGE_MESSAGE = "layer-wise evaluation"
# 108 atoms in a 10.8 Å cell: thinner than two ghost widths (cutoff 4 + skin 2 Å);
# 288 atoms 28.8 Å long: each rank's half is thicker than the ghost region
STRUCTURES = {"small": bulk_copper, "long": long_cell}


def assert_runs_equal(got: dict, expected: dict, what: str) -> None:
    """Every dumped column (forces, per-atom energy and virial, positions) at the first
    and last step, and the thermo line (energy, pressure tensor), to 1e-10 relative."""
    for frame in ("first", "dump"):
        for name, values in expected[frame].items():
            assert_close(got[frame][name], values, 1e-10, f"{what}: {frame} frame, {name}")
    for name, value in expected["thermo"].items():
        assert_close(got["thermo"][name], value, 1e-10, f"{what}: thermo {name}")


@pytest.mark.parametrize("structure", ["small", "long"])
@pytest.mark.parametrize("architecture", ["schnet", "painn", "nequip", "mace"])
def test_exchange_on_two_ranks_equals_serial(deployed, tmp_path, architecture, structure):
    model, _ = deployed(architecture)
    atoms = STRUCTURES[structure]()
    serial = run_subprocess(model, atoms, SYMBOLS, tmp_path / "serial", 1, MD, "run 100")
    assert EXCHANGE_MESSAGE not in serial["stdout"]
    parallel = run_subprocess(model, atoms, SYMBOLS, tmp_path / "mpi", 2, MD, "run 100")
    assert EXCHANGE_MESSAGE in parallel["stdout"]  # chosen by itself on two ranks
    assert_runs_equal(parallel, serial, "2 ranks")


@pytest.mark.parametrize(("architecture", "structure"), [("nequip", "slab"), ("mace", "molecule")])
def test_exchange_without_periodicity_equals_serial(deployed, tmp_path, architecture, structure):
    """Shrink-wrapped boundaries: a slab periodic in x and y, two molecules in vacuum."""
    model, _ = deployed(architecture)
    atoms = STRUCTURES_ELSEWHERE[structure]()
    serial = run_subprocess(model, atoms, SYMBOLS, tmp_path / "serial", 1, MD, "run 100")
    parallel = run_subprocess(model, atoms, SYMBOLS, tmp_path / "mpi", 2, MD, "run 100")
    assert EXCHANGE_MESSAGE in parallel["stdout"]
    assert_runs_equal(parallel, serial, f"2 ranks, {structure}")


def test_exchange_on_one_rank_equals_serial(deployed, tmp_path):
    """`parallel exchange` on one rank: the ghosts are periodic images of the rank's own
    atoms, filled by the same forward communication."""
    model, _ = deployed("mace")
    atoms = bulk_copper()
    serial = run_subprocess(model, atoms, SYMBOLS, tmp_path / "serial", 1, MD, "run 5")
    forced = run_subprocess(model, atoms, SYMBOLS, tmp_path / "forced", 1,
                            "pair_style mlff parallel exchange\n" + MD, "run 5")
    assert EXCHANGE_MESSAGE in forced["stdout"]
    assert_runs_equal(forced, serial, "1 rank, exchange")


def test_halo_keyword_keeps_the_receptive_field(deployed, tmp_path):
    model, _ = deployed("painn")
    halo = run_subprocess(model, bulk_copper(), SYMBOLS, tmp_path / "halo", 2,
                          "pair_style mlff parallel halo\n" + MD, "run 2")
    assert EXCHANGE_MESSAGE not in halo["stdout"]


def test_committee_exchange_equals_serial(committee_model, tmp_path):
    model, _ = committee_model
    extra = (UNCERTAINTY + "\ndump u all custom 1 unc.dump id f_unc\n"
             "dump_modify u sort id format float %.17g\n" + MD)
    serial = run_subprocess(model, long_cell(), SYMBOLS, tmp_path / "serial", 1, extra, "run 100")
    parallel = run_subprocess(model, long_cell(), SYMBOLS, tmp_path / "mpi", 2, extra, "run 100")
    assert EXCHANGE_MESSAGE in parallel["stdout"]
    assert_runs_equal(parallel, serial, "committee, 2 ranks")
    one = read_dump(tmp_path / "serial" / "unc.dump")["f_unc"]
    two = read_dump(tmp_path / "mpi" / "unc.dump")["f_unc"]
    assert one.min() > 1e-3
    assert_close(two, one, 1e-10, "force disagreement")


NPT_AND_MINIMIZE = ("velocity all create 300.0 1 mom yes rot no\n"
                    "fix npt all npt temp 300.0 300.0 0.1 aniso 0.0 0.0 0.5\ntimestep 0.001\n"
                    "run 5\nunfix npt\nminimize 0.0 1.0e-4 5 50")


def test_npt_and_minimize_with_exchange_equal_serial(deployed, tmp_path):
    """The virial drives fix npt and the forces minimize: the same trajectory on 2 ranks."""
    model, _ = deployed("nequip")
    serial = run_subprocess(model, long_cell(), SYMBOLS, tmp_path / "serial", 1, "",
                            NPT_AND_MINIMIZE)
    parallel = run_subprocess(model, long_cell(), SYMBOLS, tmp_path / "mpi", 2, "",
                              NPT_AND_MINIMIZE)
    assert EXCHANGE_MESSAGE in parallel["stdout"]
    for name in ("x", "y", "z", "fx", "fy", "fz", "c_pe"):
        assert_close(parallel["dump"][name], serial["dump"][name], 1e-9, name)
    for name, value in serial["thermo"].items():
        assert_close(parallel["thermo"][name], value, 1e-9, f"thermo {name}")


@pytest.mark.parametrize(("architecture", "ranks"), [("mace", 1), ("nequip", 2)])
def test_memory_low_recomputes_the_stages_and_equals_serial(deployed, tmp_path, architecture,
                                                            ranks):
    """`memory low`: every stage runs again, with its graph, in the backward pass, so one
    layer's intermediate results are held at a time; on one rank it takes the layer-wise
    evaluation by itself."""
    model, _ = deployed(architecture)
    serial = run_subprocess(model, long_cell(), SYMBOLS, tmp_path / "serial", 1, MD, "run 10")
    low = run_subprocess(model, long_cell(), SYMBOLS, tmp_path / "low", ranks,
                         "pair_style mlff memory low\n" + MD, "run 10")
    assert EXCHANGE_MESSAGE in low["stdout"]
    assert_runs_equal(low, serial, f"memory low, {ranks} rank(s)")


def test_memory_low_without_stages_says_it_saves_nothing(deployed, tmp_path):
    model, _ = deployed("allegro")  # strictly local: one cutoff, no stages
    run = run_subprocess(model, bulk_copper(), SYMBOLS, tmp_path / "low", 1,
                         "pair_style mlff memory low\n" + MD, "run 1")
    assert "'memory low' saves nothing" in run["stdout"]
    assert EXCHANGE_MESSAGE not in run["stdout"]
