"""The GROMACS model file called from C++ as GROMACS's NNPot calls it, against the ASE calculator.

``harness.cpp`` (compiled here against the torch wheel's libtorch, as the LAMMPS plugin
is) loads the file and prepares the input tensors exactly as GROMACS's ``TorchModel``
does (float32 positions and box in nm, int32 atomic numbers and pairs, bool pbc, shifts
in GROMACS's real type), then takes energy and forces as GROMACS does. Its numbers must
equal :class:`MLFFCalculator` on the same float32 positions, in kJ/mol and kJ/mol/nm, to
1e-5 relative.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms

from mlff.calculators.ase import MLFFCalculator
from mlff.calculators.gromacs import (
    ANGSTROM_PER_NM,
    EV_IN_KJ_PER_MOL,
    as_gromacs_sees,
    deploy_gromacs,
    gromacs_inputs,
    read_gromacs_metadata,
)
from mlff.calculators.lammps import build
from mlff.calculators.lammps.deploy import _quiet_scripting as quiet_scripting
from mlff.data.dataset import default_cache_dir
from mlff.data.neighbors import neighbor_list
from mlff.errors import ConfigError, ModelFileError
from mlff.models import save_model
from tests import helpers

HARNESS = Path(__file__).with_name("harness.cpp")
RTOL = 1e-5
ALL = ["atom-positions", "atom-numbers", "box", "pbc"]
PAIRS = ALL + ["atom-pairs", "pair-shifts"]


@pytest.fixture(scope="session")
def harness() -> Path:
    """The harness binary, compiled once per source and torch version (cached)."""
    compiler = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if compiler is None:
        pytest.skip("no C++ compiler (the LAMMPS plugin tests need one too)")
    include_dirs, library_dir, abi = build.torch_compile_flags()
    key = hashlib.sha256(HARNESS.read_bytes() + torch.__version__.encode()).hexdigest()[:16]
    target = default_cache_dir() / "nnpot-harness" / key / "harness"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"harness.{os.getpid()}")
    # -O0 compiles faster; the work is in libtorch either way
    command = [compiler, "-std=c++20", "-O0", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
               *(f"-I{d}" for d in include_dirs), str(HARNESS), f"-L{library_dir}",
               f"-Wl,-rpath,{library_dir}", "-ltorch", "-ltorch_cpu", "-lc10", "-o", str(partial)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    partial.replace(target)
    return target


@pytest.fixture(scope="module")
def potential():
    return helpers.build_potential("painn", scale=2.0, shift=0.1)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, potential):
    """``deployed(dtype)`` -> the model file for GROMACS, written once per dtype."""
    cache = {}

    def make(dtype: str) -> Path:
        if dtype not in cache:
            out = tmp_path_factory.mktemp(dtype) / "model.pt"
            cache[dtype] = deploy_gromacs(potential, out, dtype=dtype).model
        return cache[dtype]

    return make


def write_inputs(atoms: Atoms, folder: Path, real: str, pair_cutoff: float | None = None) -> None:
    """``atoms`` as GROMACS holds it (nm; real = float or double), and its pair list."""
    dtype = np.float64 if real == "double" else np.float32
    folder.mkdir(parents=True, exist_ok=True)
    (atoms.positions / ANGSTROM_PER_NM).astype(dtype).tofile(folder / "positions.bin")
    atoms.numbers.astype(np.int32).tofile(folder / "numbers.bin")
    (atoms.cell.array / ANGSTROM_PER_NM).astype(dtype).tofile(folder / "box.bin")
    (folder / "pbc.txt").write_text("xyz" if atoms.pbc.all() else "xy")
    if pair_cutoff is not None:
        # GROMACS's list: each pair once, distance vector x[first] - x[second] + shift
        edge_index, shifts = neighbor_list(atoms.positions, atoms.cell.array, atoms.pbc,
                                           pair_cutoff)
        once = (edge_index[0] < edge_index[1]) | (
            (edge_index[0] == edge_index[1]) & (shifts @ [1e6, 1e3, 1] > 0))
        pairs = np.stack([edge_index[1][once], edge_index[0][once]], axis=1)
        shift = shifts[once] @ atoms.cell.array / ANGSTROM_PER_NM
        pairs.astype(np.int32).tofile(folder / "pairs.bin")
        shift.astype(dtype).tofile(folder / "shifts.bin")


def run_harness(harness: Path, model: Path, folder: Path, real: str, inputs: list[str]):
    return subprocess.run([str(harness), str(model), str(folder), real, *inputs],
                          capture_output=True, text=True, check=False, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def gromacs_result(harness, model, atoms, folder, real="float", inputs=ALL, pair_cutoff=None):
    """(energy kJ/mol, forces (N, 3) kJ/mol/nm) from the harness."""
    write_inputs(atoms, folder, real, pair_cutoff)
    result = run_harness(harness, model, folder, real, inputs)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("energy ")
    forces = np.array([[float(v) for v in line.split()] for line in lines[1:]])
    return float(lines[0].split()[1]), forces


def reference(potential, atoms: Atoms, dtype: str):
    """The ASE calculator on the positions GROMACS passes, in kJ/mol and kJ/mol/nm."""
    atoms = as_gromacs_sees(atoms)
    atoms.calc = MLFFCalculator(potential, dtype=getattr(torch, dtype))
    return (atoms.get_potential_energy() * EV_IN_KJ_PER_MOL,
            atoms.get_forces() * EV_IN_KJ_PER_MOL / ANGSTROM_PER_NM)


def assert_close(got, expected):
    energy, forces = got
    reference_energy, reference_forces = expected
    assert forces.shape == reference_forces.shape
    assert abs(energy - reference_energy) <= RTOL * abs(reference_energy)
    scale = np.abs(reference_forces).max()
    assert scale > 1.0  # kJ/mol/nm: the forces are not trivially zero
    assert np.abs(forces - reference_forces).max() <= RTOL * scale


def random_atoms(count: int, cell, pbc, seed: int, symbols="HCO") -> Atoms:
    """``count`` atoms at least 1 Å apart (as far as PBC goes) in ``cell``."""
    rng = np.random.default_rng(seed)
    atoms = Atoms(cell=cell, pbc=pbc)
    while len(atoms) < count:
        trial = atoms + Atoms(symbols[len(atoms) % len(symbols)],
                              positions=[rng.uniform(0, 1, 3) @ np.asarray(cell)])
        if not len(atoms) or trial.get_distances(len(atoms), range(len(atoms)), mic=True).min() > 1:
            atoms = trial
    return atoms


def cubic_cell() -> Atoms:
    """A periodic cell of 7 Å: the 4 Å cutoff reaches over half of it (several images)."""
    return random_atoms(16, np.eye(3) * 7.0, True, seed=1)


def triclinic_cell() -> Atoms:
    return random_atoms(14, [[7.5, 0, 0], [2.0, 7.0, 0], [-1.5, 1.0, 6.5]], True, seed=2)


def slab() -> Atoms:
    """Periodic in x and y (GROMACS's pbc = xy), atoms spread 5 Å in z."""
    return random_atoms(12, [[6.5, 0, 0], [0, 7.0, 0], [0, 0, 5.0]], [True, True, False], seed=3)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_periodic_cells_equal_the_ase_calculator(harness, deployed, potential, dtype, tmp_path):
    for name, atoms in (("cubic", cubic_cell()), ("triclinic", triclinic_cell()), ("xy", slab())):
        got = gromacs_result(harness, deployed(dtype), atoms, tmp_path / name)
        assert_close(got, reference(potential, atoms, dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_boxes_three_cutoffs_wide_use_the_cell_list_and_equal_the_ase_calculator(
        harness, deployed, potential, dtype, tmp_path):
    for name, cell in (("cubic", np.eye(3) * 12.5),
                       ("triclinic", [[13.0, 0, 0], [2.5, 12.5, 0], [-2.0, 1.5, 12.2]])):
        atoms = random_atoms(60, cell, True, seed=6)
        widths = atoms.cell.volume / np.linalg.norm(
            np.cross(np.roll(atoms.cell.array, -1, 0), np.roll(atoms.cell.array, -2, 0)), axis=1)
        assert widths.min() >= 3 * 4.0  # three cutoffs: the cell list, not the all-pairs search
        atoms.positions += [[-3.0, 20.0, 5.0]] * 30 + [[0, 0, 0]] * 30  # GROMACS need not wrap
        got = gromacs_result(harness, deployed(dtype), atoms, tmp_path / name)
        assert_close(got, reference(potential, atoms, dtype))


def test_cell_list_finds_the_pairs_of_the_all_pairs_search(deployed):
    with quiet_scripting():  # the GROMACS file is TorchScript, which GROMACS needs
        model = torch.jit.load(str(deployed("float64")))
    rng = np.random.default_rng(0)
    for cell in (np.eye(3) * 13.0, [[14.0, 0, 0], [3.0, 13.5, 0], [-2.0, 1.5, 12.8]],
                 np.diag([12.5, 20.0, 16.0])):
        cell = torch.tensor(cell, dtype=torch.float64)
        x = torch.tensor(rng.uniform(-0.3, 1.3, (300, 3))) @ cell
        assert bool(model._bins(cell).min() >= 3)
        edges = [model._cell_list_edges(x, cell),
                 model._search_edges(x, cell, torch.ones(3, dtype=torch.bool))]
        found = [sorted(zip(e[0].tolist(), e[1].tolist(), map(tuple, np.round(v.numpy(), 8)),
                            strict=True)) for e, v in edges]
        assert len(found[0]) > 3000 and found[0] == found[1]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_molecule_without_box_equals_the_ase_calculator(harness, deployed, potential, dtype,
                                                        tmp_path):
    atoms = helpers.ethanol()  # no box, no pbc: only positions and atomic numbers
    got = gromacs_result(harness, deployed(dtype), atoms, tmp_path, inputs=ALL[:2])
    assert_close(got, reference(potential, atoms, dtype))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gromacs_pair_list_equals_the_ase_calculator(harness, deployed, potential, dtype, tmp_path):
    atoms = random_atoms(16, np.diag([7.0, 7.5, 8.0]), True, seed=4)
    # GROMACS 2026's pair list, longer than the 4 Å cutoff (pairs moving in between searches)
    got = gromacs_result(harness, deployed(dtype), atoms, tmp_path, inputs=PAIRS, pair_cutoff=4.6)
    assert_close(got, reference(potential, atoms, dtype))


def test_double_precision_gromacs(harness, deployed, potential, tmp_path):
    """A GMX_DOUBLE build passes box and shifts as float64, positions still as float32."""
    atoms = random_atoms(16, np.diag([7.0, 7.5, 8.0]), True, seed=5)
    expected = reference(potential, atoms, "float64")
    for inputs in (ALL, PAIRS):
        got = gromacs_result(harness, deployed("float64"), atoms, tmp_path / str(len(inputs)),
                             real="double", inputs=inputs, pair_cutoff=4.5)
        assert_close(got, expected)


def test_element_the_model_lacks_is_a_clear_error(harness, deployed, tmp_path):
    atoms = cubic_cell()
    atoms.numbers[5] = 7  # nitrogen: the model knows H C O Cu
    write_inputs(atoms, tmp_path, "float")
    result = run_harness(harness, deployed("float64"), tmp_path, "float", ALL)
    assert result.returncode == 3
    assert "atom 6 of nnpot-input-group has atomic number 7" in result.stderr
    assert "it knows H C O Cu" in result.stderr


def test_pair_shifts_with_a_triclinic_box_are_refused(harness, deployed, tmp_path):
    atoms = triclinic_cell()
    write_inputs(atoms, tmp_path, "float", pair_cutoff=4.5)
    result = run_harness(harness, deployed("float64"), tmp_path, "float", PAIRS)
    assert result.returncode == 3
    assert "triclinic box" in result.stderr


def test_deploy_command_writes_the_file_and_mdp_options(tmp_path, potential, capsys):
    from mlff.cli.main import main

    model = save_model(potential, tmp_path / "model.mlff")
    assert main(["deploy", str(model), "--engine", "gromacs", "--out", str(tmp_path / "nnp.pt"),
                 "--dtype", "float32"]) == 0
    printed = capsys.readouterr().out
    assert "nnpot-model-input4   = pbc" in printed and "nnpot-modelfile      = nnp.pt" in printed
    metadata = read_gromacs_metadata(tmp_path / "nnp.pt")
    assert metadata["units"]["energy"] == "kJ/mol" and metadata["dtype"] == "float32"
    assert metadata["symbols"] == ["H", "C", "O", "Cu"]


def test_deploy_refuses_other_extensions_and_lammps_files(tmp_path, potential):
    with pytest.raises(ConfigError, match=r"\.pt"):
        deploy_gromacs(potential, tmp_path / "model.pth")
    from mlff.calculators.lammps.deploy import deployed_metadata, save_deployed, script_model

    scripted = script_model(potential)
    save_deployed(scripted, tmp_path / "lammps.pt", deployed_metadata(scripted, {}))
    with pytest.raises(ModelFileError, match="LAMMPS, not GROMACS"):
        read_gromacs_metadata(tmp_path / "lammps.pt")


def example_system() -> Atoms:
    """examples/gromacs as GROMACS reads it: conf.gro, elements from topol.top's at.num."""
    import ase.io

    folder = Path(__file__).resolve().parents[3] / "examples" / "gromacs"
    section, number_of, molecule, atoms_of, numbers = "", {}, "", {}, []
    for raw in (folder / "topol.top").read_text().splitlines():
        line = raw.split(";")[0].strip()
        if line.startswith("["):
            section = line.strip("[] ")
        elif line and section == "atomtypes":
            number_of[line.split()[0]] = int(line.split()[1])
        elif line and section == "moleculetype":
            molecule = line.split()[0]
            atoms_of[molecule] = []
        elif line and section == "atoms":
            atoms_of[molecule].append(number_of[line.split()[1]])
        elif line and section == "molecules":
            name, count = line.split()
            numbers += atoms_of[name] * int(count)
    atoms = ase.io.read(folder / "conf.gro")
    assert len(atoms) == len(numbers)
    atoms.numbers = numbers
    return atoms


def test_example_system_runs_as_gromacs_would_run_it(harness, deployed, potential, tmp_path):
    atoms = example_system()
    gro = Path(__file__).resolve().parents[3] / "examples" / "gromacs" / "conf.gro"
    names = [line[10:15].strip() for line in gro.read_text().splitlines()[2:-1]]
    assert [name[0] for name in names] == atoms.get_chemical_symbols()  # OW -> O, HW1 -> H, C1 -> C
    assert atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)].min() > 0.9  # Å
    got = gromacs_result(harness, deployed("float32"), atoms, tmp_path)
    assert_close(got, reference(potential, atoms, "float32"))


def test_committee_gives_the_members_mean_as_the_ase_calculator_does(tmp_path):
    from mlff.uq.committee import Committee

    committee = Committee([helpers.build_potential("painn", scale=2.0, shift=0.1, seed=s)
                           for s in (0, 1)])
    result = deploy_gromacs(committee, tmp_path / "committee.pt")  # checks against the calculator
    assert result.check_error < 1e-9 and result.metadata["committee_size"] == 2
    with quiet_scripting():
        model = torch.jit.load(str(result.model))
    atoms = as_gromacs_sees(cubic_cell())
    energy, forces = model(*gromacs_inputs(atoms))
    atoms.calc = MLFFCalculator(committee)
    assert float(energy) == pytest.approx(atoms.get_potential_energy() * EV_IN_KJ_PER_MOL, rel=1e-9)
    expected = atoms.get_forces() * EV_IN_KJ_PER_MOL / ANGSTROM_PER_NM
    np.testing.assert_allclose(forces.numpy(), expected, rtol=0, atol=1e-8)
