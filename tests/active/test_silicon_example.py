"""The silicon example: its configs load and its seed files are what make_data.py writes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk

from mlff.active.config import load_learn_config
from mlff.oracles import load_oracle
from mlff.oracles.cp2k import kpoint_mesh
from mlff.train.config import validate_config

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "silicon"


def _make_data():
    spec = importlib.util.spec_from_file_location("silicon_make_data", EXAMPLE / "make_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learn_config_and_its_training_config_load():
    config = load_learn_config(EXAMPLE / "learn.yaml")
    assert Path(config.initial.structures).exists() and Path(config.explore.structures).exists()
    assert config.explore.pressures == [None, 0.0, None, None]
    train = validate_config({**config.train, "data": {**config.train["data"], "train": "x.xyz"}})
    assert train.model.architecture == "mace" and train.committee.size == 3
    # an epoch budget: a wall-clock one gave a fifth of the epochs on a loaded machine,
    # and the energies were left 0.1-0.3 eV/atom off
    assert train.training.max_minutes is None and train.training.max_epochs >= 300


def test_oracle_is_cp2k_with_the_kpoints_the_slab_needs():
    # density 2.8 (3x5x1) left the hot (100) slab's forces 39 meV/Å off (MAE) against a
    # denser mesh; 5.7 gives it 5x10x2 (9 meV/Å off), the same meshes as 6.0 elsewhere
    oracle = load_oracle(EXAMPLE / "oracle.yaml")
    assert oracle.config.type == "cp2k" and oracle.config.cutoff == pytest.approx(2041.0)
    assert oracle.config.kpoint_density == pytest.approx(5.7)
    meshes = {a.info["config_type"]: kpoint_mesh(oracle.config, a)
              for a in ase.io.read(EXAMPLE / "starts.xyz", ":")}
    assert meshes == {"bulk": [7, 7, 7], "bulk_npt": [7, 7, 7], "surface_100": [5, 10, 2],
                      "vacancy": [4, 7, 7]}


def test_seed_meshes_are_those_of_their_kind_so_strain_never_changes_the_kpoints():
    # an equation of state or elastic constant learnt across a mesh change would carry
    # its step (meV/atom); every bulk seed, strained by up to 4 %, keeps the cube's 7x7x7
    oracle = load_oracle(EXAMPLE / "oracle.yaml")
    meshes: dict[tuple[str, int], set[tuple[int, ...]]] = {}
    for atoms in ase.io.read(EXAMPLE / "initial.xyz", ":"):
        key = (atoms.info["config_type"], len(atoms))
        meshes.setdefault(key, set()).add(tuple(kpoint_mesh(oracle.config, atoms)))
    assert meshes == {("bulk_rattled", 8): {(7, 7, 7)}, ("bulk_strained", 8): {(7, 7, 7)},
                      ("vacancy", 15): {(4, 7, 7)}, ("vacancy", 31): {(4, 4, 7)},
                      ("surface_100", 12): {(5, 10, 2)}, ("surface_100", 16): {(7, 7, 2)},
                      ("surface_111", 16): {(6, 6, 2)}}


def test_validation_cells_keep_their_mesh_through_the_equation_of_state():
    # the crystal check's 2-atom cell over ±5 % in volume, and its 16- and 54-atom
    # supercells (phonons, vacancy), each at one mesh
    oracle = load_oracle(EXAMPLE / "oracle.yaml")
    primitive = bulk("Si", "diamond", a=5.464)
    for repeat, mesh in ((1, (12, 12, 12)), (2, (6, 6, 6)), (3, (4, 4, 4))):
        found = set()
        for scale in np.linspace(0.95, 1.05, 11):
            cell = primitive.copy()
            cell.set_cell(primitive.cell * scale ** (1 / 3), scale_atoms=True)
            found.add(tuple(kpoint_mesh(oracle.config, cell.repeat(repeat))))
        assert found == {mesh}, repeat


def test_first_six_seeds_are_those_the_campaign_labelled_first():
    # labels are keyed by structure: new seeds go after these, which must not move
    frames = _make_data().initial()
    assert [a.info["config_type"] for a in frames[:6]] == ["bulk_rattled"] * 4 + [
        "vacancy", "surface_100"]
    assert len(frames) == 25
    labelled = ase.io.read(EXAMPLE / "labels.xyz", ":6")
    for a, b in zip(frames[:6], labelled, strict=True):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-6)


def test_shipped_seed_files_are_what_make_data_writes():
    module = _make_data()
    for name, frames in (("initial.xyz", module.initial()), ("starts.xyz", module.starts())):
        shipped = ase.io.read(EXAMPLE / name, ":")
        assert [a.info["config_type"] for a in shipped] == [a.info["config_type"] for a in frames]
        for a, b in zip(shipped, frames, strict=True):
            np.testing.assert_allclose(a.positions, b.positions, atol=1e-6)
            np.testing.assert_allclose(a.cell.array, b.cell.array, atol=1e-6)


def test_shipped_model_runs_in_ase_with_forces_the_gradient_of_its_energy():
    from mlff.calculators.ase import MLFFCalculator
    from mlff.models.io import read_metadata

    made = read_metadata(EXAMPLE / "model.mlff")["active_learning"]
    assert made["oracle"].startswith("cp2k:PBE") and made["labels"] >= 6
    atoms = _make_data().cube()
    atoms.rattle(0.05, seed=3)
    atoms.calc = MLFFCalculator(str(EXAMPLE / "model.mlff"))
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 0.05  # a rattled cell is not at a minimum
    assert atoms.calc.results["forces_std"].shape == (len(atoms),)
    h = 1e-4
    for index, axis in ((0, 0), (3, 1), (6, 2)):
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[index, axis] += sign * h
            moved.calc = atoms.calc
            energies.append(moved.get_potential_energy())
        assert forces[index, axis] == pytest.approx(-(energies[0] - energies[1]) / (2 * h),
                                                    abs=2e-4)


def test_shipped_model_fits_the_cp2k_labels_it_was_trained_on():
    """The energies are fitted, not only the forces: a committee trained for a fifth of
    its epochs was 70-240 meV/atom off on these very cells."""
    from mlff.calculators.ase import MLFFCalculator
    from mlff.models.io import read_metadata

    labels = ase.io.read(EXAMPLE / "labels.xyz", ":")
    assert len(labels) == read_metadata(EXAMPLE / "model.mlff")["active_learning"]["labels"]
    assert all(a.info["oracle"].startswith("cp2k:PBE") for a in labels)
    calc = MLFFCalculator(str(EXAMPLE / "model.mlff"))
    energy_errors, force_errors = [], []
    for labelled in labels:
        atoms = labelled.copy()
        atoms.calc = calc
        energy_errors.append(abs(atoms.get_potential_energy()
                                 - labelled.get_potential_energy()) / len(atoms))
        force_errors.append(np.abs(atoms.get_forces() - labelled.get_forces()).mean())
    assert np.mean(energy_errors) < 0.012  # eV/atom
    assert max(energy_errors) < 0.03
    assert np.mean(force_errors) < 0.06  # eV/Å


def test_the_vacancy_lammps_input_runs_the_shipped_committee_and_finds_the_vacancy(tmp_path):
    """examples/silicon/lammps/in.vacancy with the shipped model (TorchScript, 215 atoms,
    4 steps): the committee's σ is logged every step and the analysis of
    benchmarks/silicon_lammps.py finds the vacancy where the atom was removed."""
    import shutil

    from mlff.calculators.lammps.deploy import deploy, write_data_file
    from mlff.calculators.lammps.runtime import run_lammps

    spec = importlib.util.spec_from_file_location(
        "silicon_lammps", EXAMPLE.parents[1] / "benchmarks" / "silicon_lammps.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    perfect = bench.lattice(3, bench.A_MODEL)
    atoms, removed = bench.remove_central_atom(perfect)
    deploy(str(EXAMPLE / "model.mlff"), tmp_path, structure=atoms, format="torchscript",
           build=True)
    write_data_file(atoms, tmp_path / "data.lammps", ["Si"])
    shutil.copy(EXAMPLE / "lammps" / "in.vacancy", tmp_path)
    result = run_lammps("in.vacancy", cwd=tmp_path, timeout=300, extra=[
        "-var", "model", "model.pt", "-var", "steps", "4", "-var", "temperature", "300",
        "-var", "seed", "1", "-var", "dump_every", "2"])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    thermo = bench.read_thermo(tmp_path / "log.lammps")
    assert list(thermo["Step"]) == [0, 1, 2, 3, 4]
    assert (thermo["c_maxunc"] > 0).all() and (thermo["c_maxunc"] >= thermo["c_meanunc"]).all()
    frames = bench.read_frames(tmp_path / "traj.lammpstrj")
    assert [step for step, _, _ in frames] == [0, 2, 4]
    assert bench.vacancy_sites(frames, perfect.positions) == [removed] * 3
