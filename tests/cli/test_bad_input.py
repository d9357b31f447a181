"""The bad-input corpus: every entry point fed broken, hostile or wrong input.

Each case makes one bad input and runs it through the ``mlff`` command line (in this
process, through :func:`mlff.cli.main.main` with captured output) and, where there is
one, through the Python API. A rejected input must end with exit status 2, a message on
stderr that names the file (frame, atom, field) and the fix, no traceback, and every
file that existed before (an output, a label store, a model) unchanged.

A few inputs are not errors and are checked for that: forces 1000x too large train with
a warning, an oracle returning NaN records a failed label, and a left-handed cell or a
cell smaller than the cutoff give the same results as their right-handed or repeated
equivalents. ``pair_coeff`` cases run LAMMPS itself (its errors are LAMMPS errors).

``test_case_list`` prints the table of cases (id, entry point, expected message).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml
from ase.build import bulk

from mlff.cli.main import main
from mlff.errors import DataWarning, MLFFError
from tests import helpers

# ---------------------------------------------------------------------------------------
# the shared inputs: one model, one good data file, one label store (made once)


@dataclass
class Inputs:
    """Good inputs the cases start from (the tiny PaiNN over H, C, O from conftest)."""

    root: Path
    model: Path
    data: Path
    packed: Path
    deepmd: Path
    labels: Path
    frames: list = field(default_factory=list)


def _frames() -> list:
    return [helpers.with_random_labels(helpers.water(), seed=0),
            helpers.with_random_labels(helpers.ethanol(), seed=1)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, model_file) -> Inputs:
    from mlff.active.store import LabelStore, structure_key
    from mlff.oracles import load_oracle
    from mlff.oracles.compute import compute_label

    root = tmp_path_factory.mktemp("good")
    frames = _frames()
    data = root / "good.xyz"
    ase.io.write(data, frames, format="extxyz")
    assert main(["data", "pack", str(data), "--out", str(root / "good.h5"), "--cutoff", "4.0"]) == 0
    assert main(["data", "to-deepmd", str(data), str(root / "deepmd")]) == 0
    # a label store holding one EMT label, made in this process
    oracle = load_oracle({"type": "emt"})
    cu = bulk("Cu", cubic=True)
    store = LabelStore(root / "labels.db")
    store.add(compute_label(oracle.config, cu), cu, structure_key(cu), oracle.provenance(0))
    return Inputs(root, model_file, data, root / "good.h5", root / "deepmd", root / "labels.db",
                  frames)


# ---------------------------------------------------------------------------------------
# a case: what to run, what the message must say, which files must survive


@dataclass
class Run:
    """What one case runs.

    Attributes:
        argv: the ``mlff`` command line.
        expect: fragments the error message must contain (file, frame, atom, fix).
        api: the same input through the Python API (must raise MLFFError with ``expect``).
        keep: files that exist before the run and must be byte-identical after it.
        api_expect: what the API's message must contain when it differs from ``expect``
            (an in-memory structure has no file name).
    """

    argv: list
    expect: list[str]
    api: Callable[[], object] | None = None
    keep: list[Path] = field(default_factory=list)
    api_expect: list[str] | None = None


@dataclass
class Case:
    id: str
    entry: str
    expect: str  # the main message fragment, for the printed table
    make: Callable[[Inputs, Path], Run]


CASES: list[Case] = []


def case(entry: str, expect: str):
    """Register ``make(inputs, tmp) -> Run`` as a case named after the function."""
    def register(make):
        CASES.append(Case(make.__name__.replace("_", "-"), entry, expect, make))
        return make
    return register


def sentinel(path: Path, text: str = "written before\n") -> Path:
    """A file standing for earlier output that a failed run must leave alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def xyz_lines(inputs: Inputs) -> list[str]:
    return inputs.data.read_text().splitlines()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def evaluate(inputs: Inputs, tmp: Path, data: Path, expect: list[str], api=None) -> Run:
    """``mlff evaluate MODEL DATA --json`` over an existing metrics file."""
    from mlff.data.readers import read_structures

    out = sentinel(tmp / "metrics.json", "{}\n")
    return Run(["evaluate", inputs.model, data, "--json", out], expect,
               api or (lambda: read_structures(data)), [out])


ETHANOL_ATOM = 5 + 2  # line of ethanol's atom 0 in good.xyz (water: 2 + 3 lines, then 2)


# --- training configs (mlff train) -------------------------------------------------------

def train_run(inputs: Inputs, tmp: Path, config: Path, expect: list[str]) -> Run:
    import mlff

    run_dir = tmp / "run"
    model = sentinel(run_dir / "model.mlff")
    return Run(["train", config, "--out", run_dir, "--quiet"], expect,
               lambda: mlff.train(config, out_dir=tmp / "api-run", progress=False), [model])


def good_config(inputs: Inputs, **changes) -> dict:
    config = {"seed": 0, "dtype": "float64",
              "data": {"train": str(inputs.data), "valid_fraction": 0.5,
                       "e0s": "least_squares", "cache_dir": None},
              "model": {"architecture": "painn", "cutoff": 4.0, "num_features": 8,
                        "num_layers": 1, "num_radial": 6},
              "training": {"batch_size": 1, "max_epochs": 1, "lr": 0.005}}
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        config[section][key] = value
    return config


def config_file(tmp: Path, content: dict | str | bytes) -> Path:
    path = tmp / "config.yaml"
    if isinstance(content, dict):
        path.write_text(yaml.safe_dump(content))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@case("mlff train (YAML config)", "not valid YAML")
def config_truncated(inputs, tmp):
    text = yaml.safe_dump(good_config(inputs), default_flow_style=True)
    return train_run(inputs, tmp, config_file(tmp, text[: len(text) // 2]),
                     ["config.yaml", "not valid YAML"])


@case("mlff train (YAML config)", "not a text file")
def config_garbage_bytes(inputs, tmp):
    return train_run(inputs, tmp, config_file(tmp, bytes(range(256)) * 4),
                     ["config.yaml", "not a text file"])


@case("mlff train (YAML config)", "expected a mapping")
def config_empty(inputs, tmp):
    return train_run(inputs, tmp, config_file(tmp, ""), ["config.yaml", "expected a mapping"])


@case("mlff train (YAML config)", "unknown key 'training.learning_rate'. Allowed keys here: ...")
def config_unknown_key(inputs, tmp):
    config = good_config(inputs, **{"training.learning_rate": 0.01})
    return train_run(inputs, tmp, config_file(tmp, config),
                     ["config.yaml", "training.learning_rate"])


@case("mlff train (YAML config)", "'model.cutoff': Input should be a finite number (got nan)")
def config_nan_cutoff(inputs, tmp):
    config = good_config(inputs, **{"model.cutoff": float("nan")})
    return train_run(inputs, tmp, config_file(tmp, config), ["config.yaml", "model.cutoff"])


@case("mlff train (YAML config)", "'training.lr': Input should be a finite number (got inf)")
def config_infinite_lr(inputs, tmp):
    config = good_config(inputs, **{"training.lr": float("inf")})
    return train_run(inputs, tmp, config_file(tmp, config),
                     ["config.yaml", "training.lr", "finite number"])


@case("mlff train (YAML config)", "missing.xyz: no such file")
def config_missing_data_file(inputs, tmp):
    config = good_config(inputs, **{"data.train": str(tmp / "missing.xyz")})
    return train_run(inputs, tmp, config_file(tmp, config), ["missing.xyz", "no such file"])


@case("mlff train (data without labels)", "unlabelled.xyz:0: no energy label ... data.keys.energy")
def config_data_without_labels(inputs, tmp):
    path = tmp / "unlabelled.xyz"
    ase.io.write(path, [helpers.water(), helpers.ethanol()], format="extxyz")
    config = good_config(inputs, **{"data.train": str(path)})
    return train_run(inputs, tmp, config_file(tmp, config),
                     ["unlabelled.xyz:0", "no energy label", "data.keys.energy"])


@case("mlff train (packed .h5)", "good.h5 was packed with cutoff 4.0 Å, but model.cutoff is 5.0 Å ... Repack it")
def config_packed_cutoff_mismatch(inputs, tmp):
    config = good_config(inputs, **{"data.train": str(inputs.packed), "model.cutoff": 5.0})
    return train_run(inputs, tmp, config_file(tmp, config), ["good.h5", "4.0", "5.0"])


@case("mlff train (diverging settings)", "the validation loss became inf at epoch 1. Lower training.lr")
def config_diverging_learning_rate(inputs, tmp):
    config = good_config(inputs, **{"training.lr": 1e12})
    return train_run(inputs, tmp, config_file(tmp, config),
                     ["loss became", "at epoch 1", "Lower training.lr"])


def resume_run(inputs: Inputs, tmp: Path, checkpoint: bytes | None, expect: list[str]) -> Run:
    """``mlff train --resume`` into a folder whose last.ckpt is replaced."""
    import mlff

    run_dir = tmp / "run"
    model = sentinel(run_dir / "model.mlff")
    last = run_dir / "last.ckpt"
    if checkpoint is not None:
        last.write_bytes(checkpoint)
    config = config_file(tmp, good_config(inputs))
    return Run(["train", config, "--out", run_dir, "--resume", "--quiet"], expect,
               lambda: mlff.train(config, out_dir=run_dir, resume=True, progress=False),
               [model, last])


@case("mlff train --resume (checkpoint)", "last.ckpt: not a readable mlff checkpoint ... without --resume")
def resume_garbage_checkpoint(inputs, tmp):
    return resume_run(inputs, tmp, bytes(range(256)) * 4,
                      ["last.ckpt", "not a readable mlff checkpoint", "without --resume"])


class _RunsCode:
    """Pickles to a call of os.system: what a hostile checkpoint holds."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@case("mlff train --resume (checkpoint)", "last.ckpt: not a readable mlff checkpoint (... unsupported GLOBAL posix.system ...); nothing run")
def resume_checkpoint_that_runs_code(inputs, tmp):
    import io

    import torch

    marker = tmp / "code-was-run"
    buffer = io.BytesIO()
    torch.save({"checkpoint_version": 1, "model": _RunsCode(marker)}, buffer)
    run = resume_run(inputs, tmp, buffer.getvalue(),
                     ["last.ckpt", "not a readable mlff checkpoint", "system"])
    api = run.api

    def api_and_check():
        try:
            api()
        finally:
            assert not marker.exists(), "loading the checkpoint ran code from it"
    run.api = api_and_check
    return run


# --- structure files, extxyz and other ASE formats (mlff evaluate, md, data) ---------------

@case("mlff evaluate (extxyz)", "truncated.xyz: cannot read frame 1 ... truncated")
def xyz_truncated(inputs, tmp):
    path = write_lines(tmp / "truncated.xyz", xyz_lines(inputs)[:-4])
    return evaluate(inputs, tmp, path, ["truncated.xyz", "frame 1", "truncated"])


@case("mlff evaluate (extxyz)", "garbage.xyz: cannot read frame 0")
def xyz_garbage_bytes(inputs, tmp):
    path = tmp / "garbage.xyz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return evaluate(inputs, tmp, path, ["garbage.xyz", "cannot read frame 0"])


@case("mlff evaluate (extxyz)", "empty.xyz: the file is empty")
def xyz_empty(inputs, tmp):
    path = tmp / "empty.xyz"
    path.write_text("")
    return evaluate(inputs, tmp, path, ["empty.xyz", "the file is empty"])


@case("mlff evaluate (extxyz)", "nan.xyz:1: the position of atom 3 is not a finite number")
def xyz_nan_position(inputs, tmp):
    lines = xyz_lines(inputs)
    fields = lines[ETHANOL_ATOM + 3].split()
    fields[1] = "nan"
    lines[ETHANOL_ATOM + 3] = " ".join(fields)
    path = write_lines(tmp / "nan.xyz", lines)
    return evaluate(inputs, tmp, path, ["nan.xyz:1", "position of atom 3", "not a finite"])


@case("mlff evaluate (extxyz)", "inf.xyz:1: the force 'forces' of atom 4 is not a finite number")
def xyz_inf_force(inputs, tmp):
    lines = xyz_lines(inputs)
    fields = lines[ETHANOL_ATOM + 4].split()
    fields[-1] = "inf"
    lines[ETHANOL_ATOM + 4] = " ".join(fields)
    path = write_lines(tmp / "inf.xyz", lines)
    return evaluate(inputs, tmp, path, ["inf.xyz:1", "force 'forces' of atom 4"])


@case("mlff evaluate (extxyz)", "shape.xyz:0: forces 'forces' have shape (3, 2); expected (3, 3)")
def xyz_forces_wrong_shape(inputs, tmp):
    lines = xyz_lines(inputs)[:5]  # the water frame
    lines[1] = lines[1].replace("forces:R:3", "forces:R:2")
    lines[2:5] = [" ".join(line.split()[:-1]) for line in lines[2:5]]
    path = write_lines(tmp / "shape.xyz", lines)
    return evaluate(inputs, tmp, path, ["shape.xyz:0", "shape (3, 2)", "expected (3, 3)"])


@case("mlff evaluate (no labels)", "unlabelled.xyz: no frame has an energy ... --energy-key")
def xyz_missing_labels(inputs, tmp):
    from mlff.uq.io import load_model
    from mlff.validate.evaluate import evaluate_file

    path = tmp / "unlabelled.xyz"
    ase.io.write(path, [helpers.water(), helpers.ethanol()], format="extxyz")
    run = evaluate(inputs, tmp, path, ["unlabelled.xyz", "no frame has an energy", "--energy-key"],
                   lambda: evaluate_file(load_model(inputs.model), path))
    run.api_expect = ["unlabelled.xyz", "no frame has an energy"]
    return run


@case("mlff evaluate (unknown element)", "nitrogen.xyz:1 ... element N ... H, C, O")
def xyz_unknown_element(inputs, tmp):
    frames = _frames()
    frames[1].numbers[2] = 7
    path = tmp / "nitrogen.xyz"
    ase.io.write(path, frames, format="extxyz")

    def api():
        import mlff

        structure = mlff.read_structures(path)[1]
        atoms = structure.atoms.copy()
        atoms.calc = mlff.MLFFCalculator(inputs.model)
        return atoms.get_potential_energy()

    run = evaluate(inputs, tmp, path, ["nitrogen.xyz:1", "element N", "H, C, O"], api)
    run.api_expect = ["element N", "H, C, O"]
    return run


@case("mlff evaluate (extxyz)", "overlap.xyz:1: atoms 2 (O) and 3 (H) are 0.000 Å apart")
def xyz_overlapping_atoms(inputs, tmp):
    frames = _frames()
    frames[1].positions[3] = frames[1].positions[2]
    path = tmp / "overlap.xyz"
    ase.io.write(path, frames, format="extxyz")
    return evaluate(inputs, tmp, path, ["overlap.xyz:1", "atoms 2 (O) and 3 (H)", "0.000 Å apart"])


@case("mlff evaluate (extxyz)", "flat.xyz:0: the cell vectors ... linearly dependent")
def xyz_zero_volume_cell(inputs, tmp):
    frames = _frames()[:1]
    frames[0].cell = [[6.0, 0, 0], [0, 6.0, 0], [6.0, 6.0, 0]]
    frames[0].pbc = True
    path = tmp / "flat.xyz"
    ase.io.write(path, frames, format="extxyz")
    return evaluate(inputs, tmp, path, ["flat.xyz:0", "linearly dependent", "set pbc to False"])


@case("mlff evaluate (extxyz)", "thin.xyz:0: atom 0 is 0.100 Å from its own periodic image")
def xyz_cell_shorter_than_an_atom(inputs, tmp):
    frames = _frames()[:1]
    frames[0].cell = np.diag([0.1, 8.0, 8.0])
    frames[0].pbc = True
    path = tmp / "thin.xyz"
    ase.io.write(path, frames, format="extxyz")
    return evaluate(inputs, tmp, path, ["thin.xyz:0", "own periodic image", "0.100 Å"])


@case("mlff evaluate (extxyz)", "nancell.xyz:0: the cell is not a finite number")
def xyz_nan_cell(inputs, tmp):
    lines = xyz_lines(inputs)
    lines[1] = lines[1].replace('pbc="F F F"', 'pbc="T T T" Lattice="nan 0 0 0 8 0 0 0 8"')
    path = write_lines(tmp / "nancell.xyz", lines)
    return evaluate(inputs, tmp, path, ["nancell.xyz:0", "the cell is not a finite number"])


@case("mlff md (VASP POSCAR)", "POSCAR:-1: cannot read the structure (...). The file may be truncated")
def poscar_truncated(inputs, tmp):
    from mlff.md import read_start_structure

    path = tmp / "POSCAR"
    water = helpers.water()
    water.cell = np.diag([8.0, 8.0, 8.0])
    ase.io.write(path, water, format="vasp")
    path.write_text("\n".join(path.read_text().splitlines()[:-2]) + "\n")
    out = tmp / "md"
    trajectory = sentinel(out / "trajectory.extxyz")
    return Run(["md", inputs.model, path, "--steps", "2", "--timestep", "0.5", "--temperature",
                "300", "--out", out], ["POSCAR", "cannot read the structure", "truncated"],
               lambda: read_start_structure(path), [trajectory])


@case("mlff data info (CIF)", "bad.cif: cannot read frame 0")
def cif_truncated(inputs, tmp):
    from mlff.data.describe import describe

    path = tmp / "bad.cif"
    ase.io.write(path, bulk("Cu", cubic=True))
    path.write_text(path.read_text()[:200])
    return Run(["data", "info", path], ["bad.cif", "cannot read frame 0"], lambda: describe(path))


@case("mlff evaluate (ASE database)", "bad.db: cannot read frame 0 (DatabaseError ...)")
def ase_db_garbage(inputs, tmp):
    path = tmp / "bad.db"
    path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 8)
    return evaluate(inputs, tmp, path, ["bad.db", "cannot read frame 0"])


@case("mlff md (frame index)", "good.xyz: has no frame 5")
def md_frame_out_of_range(inputs, tmp):
    from mlff.md import read_start_structure

    out = tmp / "md"
    trajectory = sentinel(out / "trajectory.extxyz")
    return Run(["md", inputs.model, inputs.data, "--frame", "5", "--steps", "2", "--timestep",
                "0.5", "--temperature", "300", "--out", out], ["good.xyz", "no frame 5"],
               lambda: read_start_structure(inputs.data, 5), [trajectory])


@case("mlff md (overlapping atoms)", "start.xyz:0: atoms 2 (O) and 3 (H) are 0.000 Å apart")
def md_overlapping_atoms(inputs, tmp):
    from mlff.md import read_start_structure

    atoms = helpers.ethanol()
    atoms.positions[3] = atoms.positions[2]
    path = tmp / "start.xyz"
    ase.io.write(path, atoms, format="extxyz")
    out = tmp / "md"
    trajectory = sentinel(out / "trajectory.extxyz")
    return Run(["md", inputs.model, path, "--frame", "0", "--steps", "2", "--timestep", "0.5",
                "--temperature", "300", "--out", out],
               ["start.xyz:0", "atoms 2 (O) and 3 (H)", "Fix or remove this frame"],
               lambda: read_start_structure(path, 0), [trajectory])


@case("mlff md (unknown element)", "start.xyz ... element N ... H, C, O")
def md_unknown_element(inputs, tmp):
    atoms = helpers.ethanol()
    atoms.numbers[2] = 7
    path = tmp / "start.xyz"
    ase.io.write(path, atoms, format="extxyz")
    out = tmp / "md"
    trajectory = sentinel(out / "trajectory.extxyz")

    def api():
        import mlff

        atoms.calc = mlff.MLFFCalculator(inputs.model)
        return atoms.get_potential_energy()

    return Run(["md", inputs.model, path, "--frame", "0", "--steps", "2", "--timestep", "0.5",
                "--temperature", "300", "--out", out], ["start.xyz", "element N", "H, C, O"],
               api, [trajectory], api_expect=["element N", "H, C, O"])


@case("mlff data split", "garbage.h5: cannot read it as a packed data set")
def split_garbage(inputs, tmp):
    from mlff.data.describe import count_structures

    path = tmp / "garbage.h5"
    path.write_bytes(bytes(range(256)) * 16)
    out = tmp / "splits"
    kept = sentinel(out / "train_indices.txt", "0\n1\n")
    return Run(["data", "split", path, "--valid-fraction", "0.5", "--out-dir", out],
               ["garbage.h5", "cannot read it as a packed data set"],
               lambda: count_structures(path), [kept])


# --- deepmd/npy directories ---------------------------------------------------------------

def deepmd_copy(inputs: Inputs, tmp: Path) -> Path:
    """A copy of the good deepmd/npy directory; returns the set of its second system."""
    shutil.copytree(inputs.deepmd, tmp / "deepmd")
    return tmp / "deepmd" / "sys.001" / "set.000"


@case("mlff evaluate (deepmd/npy)", "force.npy: has shape (1, 24); expected (nframes, 27)")
def deepmd_inconsistent_shapes(inputs, tmp):
    frames = deepmd_copy(inputs, tmp)
    np.save(frames / "force.npy", np.load(frames / "force.npy")[:, :-3])
    return evaluate(inputs, tmp, tmp / "deepmd", ["sys.001/set.000/force.npy", "(1, 24)",
                                                  "expected (nframes, 27)"])


@case("mlff evaluate (deepmd/npy)", "coord.npy: cannot read it as a .npy array")
def deepmd_truncated_array(inputs, tmp):
    frames = deepmd_copy(inputs, tmp)
    (frames / "coord.npy").write_bytes((frames / "coord.npy").read_bytes()[:100])
    return evaluate(inputs, tmp, tmp / "deepmd", ["sys.001/set.000/coord.npy",
                                                  "cannot read it as a .npy array"])


@case("mlff evaluate (deepmd/npy)", "type.raw: atom 3 has type 7, but type_map.raw names 3 types")
def deepmd_type_outside_map(inputs, tmp):
    deepmd_copy(inputs, tmp)
    (tmp / "deepmd" / "sys.001" / "type.raw").write_text("0 1 2 7 0 0 0 0 0\n")
    return evaluate(inputs, tmp, tmp / "deepmd", ["sys.001/type.raw", "atom 3 has type 7"])


@case("mlff evaluate (deepmd/npy)", "set.000:0: energy 'energy' is nan")
def deepmd_nan_energy(inputs, tmp):
    frames = deepmd_copy(inputs, tmp)
    energy = np.load(frames / "energy.npy")
    energy[0] = np.nan
    np.save(frames / "energy.npy", energy)
    return evaluate(inputs, tmp, tmp / "deepmd", ["sys.001/set.000:0", "is nan"])


# --- packed HDF5 data sets ----------------------------------------------------------------

def packed_copy(inputs: Inputs, tmp: Path, edit=None) -> Path:
    import h5py

    path = tmp / "data.h5"
    shutil.copy(inputs.packed, path)
    if edit is not None:
        with h5py.File(path, "r+") as handle:
            edit(handle)
    return path


def packed_run(inputs: Inputs, tmp: Path, path: Path, expect: list[str]) -> Run:
    from mlff.data.packed import PackedDataset

    return evaluate(inputs, tmp, path, expect, lambda: list(PackedDataset(path)))


@case("mlff evaluate (packed .h5)", "data.h5: cannot read it as a packed data set ... truncated")
def packed_truncated(inputs, tmp):
    path = tmp / "data.h5"
    path.write_bytes(inputs.packed.read_bytes()[: inputs.packed.stat().st_size // 2])
    return packed_run(inputs, tmp, path, ["data.h5", "truncated", "mlff data pack"])


@case("mlff evaluate (packed .h5)", "data.h5: cannot read it as a packed data set ... not HDF5")
def packed_garbage_bytes(inputs, tmp):
    path = tmp / "data.h5"
    path.write_bytes(bytes(range(256)) * 16)
    return packed_run(inputs, tmp, path, ["data.h5", "not HDF5"])


@case("mlff evaluate (packed .h5)", "the packed arrays are inconsistent: 'forces' has shape (3, 3)")
def packed_inconsistent_shapes(inputs, tmp):
    def edit(handle):
        del handle["forces"]
        handle["forces"] = np.zeros((3, 3))
    path = packed_copy(inputs, tmp, edit)
    return packed_run(inputs, tmp, path, ["data.h5", "'forces' has shape (3, 3)", "repack"])


@case("mlff evaluate (packed .h5)", "structure 0 (from good.xyz:0) has a non-finite position ... atom 0")
def packed_nan_position(inputs, tmp):
    def edit(handle):
        handle["positions"][0, 0] = np.nan
    path = packed_copy(inputs, tmp, edit)
    return packed_run(inputs, tmp, path, ["data.h5", "structure 0", "good.xyz:0",
                                          "non-finite position", "atom 0"])


@case("mlff evaluate (packed .h5)", "structure 0 ... has an edge to an atom it does not have")
def packed_edge_out_of_range(inputs, tmp):
    def edit(handle):
        handle["edge_index"][0, 1] = 1000
    path = packed_copy(inputs, tmp, edit)
    return packed_run(inputs, tmp, path, ["data.h5", "structure 0", "edge to an atom"])


@case("mlff evaluate (packed .h5)", "cannot read it as a packed data set (KeyError ... 'cutoff')")
def packed_missing_attribute(inputs, tmp):
    def edit(handle):
        del handle.attrs["cutoff"]
    path = packed_copy(inputs, tmp, edit)
    return packed_run(inputs, tmp, path, ["data.h5", "cutoff", "mlff data pack"])


@case("mlff data pack (existing output)", "empty.xyz: the file is empty; the old .h5 is kept")
def pack_keeps_existing_output(inputs, tmp):
    from mlff.data.packed import pack

    out = tmp / "data.h5"
    shutil.copy(inputs.packed, out)
    empty = tmp / "empty.xyz"
    empty.write_text("")
    return Run(["data", "pack", inputs.data, empty, "--out", out, "--cutoff", "4.0"],
               ["empty.xyz", "the file is empty"], lambda: pack([inputs.data, empty], out, 4.0),
               [out])


@case("mlff data to-deepmd", "nan.xyz:1: the position of atom 3 ...; nothing written")
def to_deepmd_bad_input(inputs, tmp):
    lines = xyz_lines(inputs)
    fields = lines[ETHANOL_ATOM + 3].split()
    fields[2] = "nan"
    lines[ETHANOL_ATOM + 3] = " ".join(fields)
    path = write_lines(tmp / "nan.xyz", lines)
    out = tmp / "deepmd"
    kept = sentinel(out / "notes.txt")
    return Run(["data", "to-deepmd", path, out], ["nan.xyz:1", "atom 3"], None, [kept])


# --- model files (.mlff) -------------------------------------------------------------------

def rewrite_model(inputs: Inputs, path: Path, metadata=None, weights=None, entries=None,
                  drop: tuple[str, ...] = ()) -> Path:
    """A copy of the tiny model with its metadata changed (a function of it) and entries
    replaced, added or dropped."""
    with zipfile.ZipFile(inputs.model) as archive:
        meta = json.loads(archive.read("metadata.json"))
        tensors = archive.read("weights.safetensors")
    if metadata is not None:
        meta = metadata(meta)
    contents = {"metadata.json": json.dumps(meta), "weights.safetensors": tensors
                if weights is None else weights}
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in contents.items():
            if name not in drop:
                archive.writestr(name, value)
        for name, value in (entries or []):
            archive.writestr(name, value)
    return path


def model_run(inputs: Inputs, tmp: Path, model: Path, expect: list[str],
              command: str = "evaluate") -> Run:
    """The bad model through ``mlff evaluate`` (or ``info``/``export``) and mlff.load_model."""
    import mlff

    if command == "info":
        argv, keep = ["info", model], []
    elif command == "export":
        out = tmp / "exported.mlff"
        shutil.copy(inputs.model, out)
        argv, keep = ["export", model, "--out", out], [out]
    else:
        out = sentinel(tmp / "metrics.json", "{}\n")
        argv, keep = ["evaluate", model, inputs.data, "--json", out], [out]
    return Run(argv, [model.name, *expect], lambda: mlff.load_model(model), keep)


def with_hyperparameters(**changes):
    def change(meta):
        meta["hyperparameters"].update(changes)
        return meta
    return change


@case("mlff evaluate (model file)", "model.mlff: not an mlff model file (not a zip archive, or a truncated or damaged one: ...)")
def model_truncated(inputs, tmp):
    path = tmp / "model.mlff"
    path.write_bytes(inputs.model.read_bytes()[: inputs.model.stat().st_size // 2])
    return model_run(inputs, tmp, path, ["not a zip archive, or a truncated or damaged one"])


@case("mlff evaluate (model file)", "model.mlff: cannot read the model file (zlib error ...); it may be damaged")
def model_damaged_compressed_data(inputs, tmp):
    data = bytearray(inputs.model.read_bytes())
    with zipfile.ZipFile(inputs.model) as archive:
        info = archive.getinfo("weights.safetensors")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    middle = start + info.compress_size // 2
    data[middle:middle + 16] = bytes(16)  # zeros in the middle of the compressed weights
    path = tmp / "model.mlff"
    path.write_bytes(bytes(data))
    return model_run(inputs, tmp, path, ["damaged"])


@case("mlff info (model file)", "model.mlff: not an mlff model file")
def model_garbage_bytes(inputs, tmp):
    path = tmp / "model.mlff"
    path.write_bytes(bytes(range(256)) * 16)
    return model_run(inputs, tmp, path, ["not an mlff model file"], "info")


@case("mlff export (model file)", "model.mlff: not an mlff model file; the old --out is kept")
def model_empty(inputs, tmp):
    path = tmp / "model.mlff"
    path.write_bytes(b"")
    return model_run(inputs, tmp, path, ["not an mlff model file"], "export")


@case("mlff evaluate (model file)", "entry named '../../evil.py', an absolute or '..' path")
def model_entry_with_parent_path(inputs, tmp):
    path = rewrite_model(inputs, tmp / "model.mlff", entries=[("../../evil.py", "print(1)")])
    return model_run(inputs, tmp, path, ["'../../evil.py'", "Do not use it"])


@case("mlff info (model file)", "entry named '/etc/cron.d/evil', an absolute or '..' path")
def model_entry_with_absolute_path(inputs, tmp):
    path = rewrite_model(inputs, tmp / "model.mlff", entries=[("/etc/cron.d/evil", "x")])
    return model_run(inputs, tmp, path, ["'/etc/cron.d/evil'", "absolute"], "info")


@case("mlff evaluate (model file)", "the archive holds metadata.json 2 times")
def model_duplicate_entry(inputs, tmp):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        path = rewrite_model(inputs, tmp / "model.mlff",
                             entries=[("metadata.json", json.dumps({"format_version": 2}))])
    return model_run(inputs, tmp, path, ["metadata.json 2 times"])


@case("mlff info (model file)", "written in model-file format 99 ... Upgrade mlff")
def model_newer_format(inputs, tmp):
    path = rewrite_model(inputs, tmp / "model.mlff",
                         metadata=lambda meta: {**meta, "format_version": 99})
    return model_run(inputs, tmp, path, ["format 99", "Upgrade mlff"], "info")


@case("mlff evaluate (model file)", "not an mlff model file (it lacks weights.safetensors)")
def model_missing_weights(inputs, tmp):
    path = rewrite_model(inputs, tmp / "model.mlff", drop=("weights.safetensors",))
    return model_run(inputs, tmp, path, ["lacks weights.safetensors"])


@case("mlff info (model file)", "not an mlff model file (it lacks metadata.json)")
def model_missing_metadata(inputs, tmp):
    path = rewrite_model(inputs, tmp / "model.mlff", drop=("metadata.json",))
    return model_run(inputs, tmp, path, ["lacks metadata.json"], "info")


@case("mlff evaluate (model file)", "hyperparameters.num_features = 10000000, larger than any tensor")
def model_huge_shapes(inputs, tmp):
    path = rewrite_model(inputs, tmp / "model.mlff",
                         metadata=with_hyperparameters(num_features=10_000_000))
    return model_run(inputs, tmp, path, ["hyperparameters.num_features = 10000000",
                                         "original model file"])


@case("mlff export (model file)", "the weights do not match the metadata: tensor ... has shape")
def model_weights_not_matching_metadata(inputs, tmp):
    path = rewrite_model(inputs, tmp / "model.mlff", metadata=with_hyperparameters(num_features=6))
    return model_run(inputs, tmp, path, ["weights do not match the metadata", "has shape"],
                     "export")


@case("mlff evaluate (model file)", "the weights do not match the metadata: tensor 'model.embedding.weight' has shape [1000000000000]")
def model_weights_header_with_huge_tensor(inputs, tmp):
    header = json.dumps({"model.embedding.weight": {"dtype": "F64", "shape": [10**12],
                                                    "data_offsets": [0, 8 * 10**12]}}).encode()
    weights = len(header).to_bytes(8, "little") + header + b"\x00" * 64
    path = rewrite_model(inputs, tmp / "model.mlff", weights=weights)
    return model_run(inputs, tmp, path, ["weights do not match the metadata",
                                         "'model.embedding.weight' has shape [1000000000000]"])


@case("mlff info (model file)", "metadata.json holds a list, not an object")
def model_metadata_not_an_object(inputs, tmp):
    path = rewrite_model(inputs, tmp / "model.mlff", metadata=lambda meta: [1, 2])
    return model_run(inputs, tmp, path, ["holds a list"], "info")


@case("mlff info (model file)", "'species' = [1, 6, 500] is not a list of atomic numbers")
def model_invalid_species(inputs, tmp):
    path = rewrite_model(inputs, tmp / "model.mlff",
                         metadata=lambda meta: {**meta, "species": [1, 6, 500]})
    return model_run(inputs, tmp, path, ["'species' = [1, 6, 500]", "atomic numbers"], "info")


@case("mlff export (model file)", "'dtype' = 'float16' is not one of float32, float64")
def model_unknown_dtype(inputs, tmp):
    path = rewrite_model(inputs, tmp / "model.mlff",
                         metadata=lambda meta: {**meta, "dtype": "float16"})
    return model_run(inputs, tmp, path, ["'dtype' = 'float16'"], "export")


@case("mlff evaluate (model file)", "'cutoff' = nan is not a finite number")
def model_nan_cutoff(inputs, tmp):
    path = rewrite_model(inputs, tmp / "model.mlff",
                         metadata=lambda meta: {**meta, "cutoff": float("nan")})
    return model_run(inputs, tmp, path, ["'cutoff' = nan"])


@case("mlff info (model file)", "'species_symbols' [...] do not match the species")
def model_missing_or_mismatched_field(inputs, tmp):
    path = rewrite_model(inputs, tmp / "model.mlff",
                         metadata=lambda meta: {**meta, "species_symbols": ["H", "C", "N"]})
    return model_run(inputs, tmp, path, ["'species_symbols'", "do not match"], "info")


@case("mlff evaluate (model file)", "weights.safetensors is truncated or not a safetensors file")
def model_garbage_weights(inputs, tmp):
    path = rewrite_model(inputs, tmp / "model.mlff", weights=b"\xff" * 100)
    return model_run(inputs, tmp, path, ["weights.safetensors is truncated"])


def committee_file(inputs: Inputs, path: Path) -> Path:
    from mlff.uq.committee import Committee
    from mlff.uq.io import save_committee

    members = [helpers.build_potential("painn", species=(1, 6, 8), e0s=(-13.5, -1025.0, -2035.5),
                                       seed=k) for k in range(2)]
    return save_committee(Committee(members), path)


@case("mlff evaluate (committee file)", "metadata.json: 'committee' = 3 does not match the members")
def committee_size_not_matching_members(inputs, tmp):
    import mlff

    path = committee_file(inputs, tmp / "committee.mlff")
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read("metadata.json"))
        tensors = archive.read("weights.safetensors")
    meta["committee"] = 3
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps(meta))
        archive.writestr("weights.safetensors", tensors)
    out = sentinel(tmp / "metrics.json", "{}\n")
    return Run(["evaluate", path, inputs.data, "--json", out],
               ["committee.mlff", "'committee' = 3 does not match"],
               lambda: mlff.load_model(path), [out])


@case("mlff info (committee file)", "members[1]: 'e0s' has no value for O")
def committee_member_metadata_broken(inputs, tmp):
    path = committee_file(inputs, tmp / "committee.mlff")
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read("metadata.json"))
        tensors = archive.read("weights.safetensors")
    del meta["members"][1]["e0s"]["O"]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps(meta))
        archive.writestr("weights.safetensors", tensors)
    return model_run(inputs, tmp, path, ["members[1]", "'e0s' has no value for O"], "info")


# --- other commands: deploy, validate, label, learn ----------------------------------------

@case("mlff deploy (--structure)", "start.xyz:-1: atoms 2 (O) and 3 (H) are 0.000 Å apart")
def deploy_overlapping_structure(inputs, tmp):
    from mlff.calculators.lammps.deploy import deploy

    atoms = helpers.ethanol()
    atoms.positions[3] = atoms.positions[2]
    path = tmp / "start.xyz"
    ase.io.write(path, atoms, format="extxyz")
    out = tmp / "deployed"
    model = sentinel(out / "model.pt")

    def api():
        from mlff.md import read_start_structure

        return deploy(inputs.model, tmp / "api", structure=read_start_structure(path), build=False,
                      format="torchscript")

    return Run(["deploy", inputs.model, "--structure", path, "--out", out, "--no-plugin",
                "--format", "torchscript"],
               ["start.xyz", "atoms 2 (O) and 3 (H)"], api, [model])


@case("mlff validate (--data)", "truncated.xyz: cannot read frame 1")
def validate_truncated_data(inputs, tmp):
    path = write_lines(tmp / "truncated.xyz", xyz_lines(inputs)[:-4])
    out = tmp / "report"
    report = sentinel(out / "report.md")
    return Run(["validate", inputs.model, "--data", path, "--checks", "errors", "--out", out],
               ["truncated.xyz", "frame 1"], None, [report])


@case("mlff validate (--reference)", "reference.yaml: not a text file")
def validate_garbage_reference(inputs, tmp):
    from mlff.oracles import load_oracle

    path = tmp / "reference.yaml"
    path.write_bytes(bytes(range(256)))
    out = tmp / "report"
    report = sentinel(out / "report.md")
    return Run(["validate", inputs.model, "--data", inputs.data, "--reference", path,
                "--checks", "cost", "--out", out], ["reference.yaml", "not a text file"],
               lambda: load_oracle(path), [report])


def label_run(inputs: Inputs, tmp: Path, structures: Path, expect: list[str],
              oracle: Path | None = None, store: Path | None = None, api=None) -> Run:
    if oracle is None:
        oracle = tmp / "emt.yaml"
        oracle.write_text("type: emt\n")
    if store is None:
        store = tmp / "labels.db"
        shutil.copy(inputs.labels, store)
    return Run(["label", structures, "--oracle", oracle, "--out", store, "--workers", "1"],
               expect, api, [store])


@case("mlff label (structures)", "truncated.xyz: cannot read the structures; labels.db kept")
def label_truncated_structures(inputs, tmp):
    from mlff.cli.label import read_frames

    path = write_lines(tmp / "truncated.xyz", xyz_lines(inputs)[:-4])
    return label_run(inputs, tmp, path, ["truncated.xyz", "cannot read the structures"],
                     api=lambda: read_frames(path, ":"))


@case("mlff label (structures)", "overlap.xyz:1: atoms 2 (O) and 3 (H) ... (no oracle call)")
def label_overlapping_atoms(inputs, tmp):
    from mlff.cli.label import read_frames

    frames = _frames()
    frames[1].positions[3] = frames[1].positions[2]
    path = tmp / "overlap.xyz"
    ase.io.write(path, frames, format="extxyz")
    return label_run(inputs, tmp, path, ["overlap.xyz:1", "atoms 2 (O) and 3 (H)"],
                     api=lambda: read_frames(path, ":"))


@case("mlff label (--oracle)", "oracle.yaml: not a text file")
def label_garbage_oracle_config(inputs, tmp):
    from mlff.oracles import load_oracle

    oracle = tmp / "oracle.yaml"
    oracle.write_bytes(bytes(range(256)))
    return label_run(inputs, tmp, inputs.data, ["oracle.yaml", "not a text file"], oracle=oracle,
                     api=lambda: load_oracle(oracle))


@case("mlff label (--oracle)", "oracle.yaml: unknown key 'functional'")
def label_unknown_oracle_key(inputs, tmp):
    from mlff.oracles import load_oracle

    oracle = tmp / "oracle.yaml"
    oracle.write_text("type: emt\nfunctional: PBE\n")
    return label_run(inputs, tmp, inputs.data, ["oracle.yaml", "unknown key 'functional'"],
                     oracle=oracle, api=lambda: load_oracle(oracle))


@case("mlff label (--out store)", "store.db: not an ASE SQLite database")
def label_garbage_store(inputs, tmp):
    from mlff.active.store import LabelStore

    store = tmp / "store.db"
    store.write_bytes(bytes(range(256)) * 8)
    return label_run(inputs, tmp, inputs.data, ["store.db", "not an ASE SQLite database"],
                     store=store, api=lambda: LabelStore(store))


@case("mlff learn (YAML config)", "learn.yaml: not a text file")
def learn_garbage_config(inputs, tmp):
    from mlff.active.loop import learn

    path = tmp / "learn.yaml"
    path.write_bytes(bytes(range(256)))
    out = tmp / "al"
    kept = sentinel(out / "labels.db")
    return Run(["learn", path, "--out", out, "--quiet"], ["learn.yaml", "not a text file"],
               lambda: learn(path, tmp / "api"), [kept])


@case("mlff learn (YAML config)", "learn.yaml: 'select.upper': Input should be a finite number")
def learn_infinite_threshold(inputs, tmp):
    from mlff.active.loop import learn

    path = tmp / "learn.yaml"
    path.write_text(yaml.safe_dump({
        "oracle": {"type": "emt"}, "initial": {"structures": str(inputs.data)},
        "explore": {"structures": str(inputs.data)},
        "select": {"lower": 0.01, "upper": float("inf")},
        "train": good_config(inputs),
    }))
    out = tmp / "al"
    kept = sentinel(out / "labels.db")
    return Run(["learn", path, "--out", out, "--quiet"], ["learn.yaml", "select.upper", "finite"],
               lambda: learn(path, tmp / "api"), [kept])


@case("mlff generate (structure)", "start.xyz:-1: atoms 2 (O) and 3 (H) ...; old output kept")
def generate_overlapping_start(inputs, tmp):
    atoms = helpers.ethanol()
    atoms.positions[3] = atoms.positions[2]
    path = tmp / "start.xyz"
    ase.io.write(path, atoms, format="extxyz")
    oracle = tmp / "emt.yaml"
    oracle.write_text("type: emt\n")
    out = tmp / "reference.xyz"
    shutil.copy(inputs.data, out)
    return Run(["generate", path, "--oracle", oracle, "--out", out, "--temperature", "300",
                "--steps", "4", "--timestep", "0.5", "--every", "2"],
               ["start.xyz", "atoms 2 (O) and 3 (H)"], None, [out])


@case("mlff ipi (structure)", "garbage.xyz:-1: cannot read the structure (UnicodeDecodeError ...)")
def ipi_garbage_structure(inputs, tmp):
    path = tmp / "garbage.xyz"
    path.write_bytes(bytes(range(256)) * 8)
    out = tmp / "ipi"
    kept = sentinel(out / "input.xml")
    return Run(["ipi", inputs.model, path, "--write-input", out],
               ["garbage.xyz", "cannot read the structure"], None, [kept])


# ---------------------------------------------------------------------------------------
# running the cases


def run_cli(argv: list, capsys) -> tuple[int, str, str]:
    """``mlff ARGV`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_clear_error(case, inputs, tmp_path, capsys):
    run = case.make(inputs, tmp_path)
    before = {path: path.read_bytes() for path in run.keep}
    status, out, err = run_cli(run.argv, capsys)
    assert status == 2, (status, out, err)
    assert "Traceback" not in out + err, err
    assert err.startswith("error:"), err
    for fragment in run.expect:
        assert fragment in err, (fragment, err)
    for path, content in before.items():
        assert path.read_bytes() == content, f"{path} was changed by a failed run"
    if run.api is not None:
        with pytest.raises(MLFFError) as caught:
            run.api()
        for fragment in run.api_expect or run.expect:
            assert fragment in str(caught.value), (fragment, str(caught.value))
        for path, content in before.items():
            assert path.read_bytes() == content, f"{path} was changed by the API"


def test_error_through_the_real_command(inputs, tmp_path):
    """One case as a user meets it: `python -m mlff` exits with 2, one line, no traceback."""
    path = rewrite_model(inputs, tmp_path / "model.mlff", entries=[("../evil", "x")])
    result = subprocess.run([sys.executable, "-m", "mlff", "info", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.startswith("error:")
    assert "'../evil'" in result.stderr and result.stdout == ""


# --- inputs that are not errors -----------------------------------------------------------

def test_forces_in_wrong_units_train_with_a_warning(inputs, tmp_path):
    """Forces 1000x too large (meV/Å read as eV/Å): a warning naming the file, not an error."""
    from mlff.train.config import load_config
    from mlff.train.data import load_training_data

    frames = _frames()
    for atoms in frames:
        atoms.calc.results["forces"] = atoms.calc.results["forces"] * 1000
    data = tmp_path / "mev.xyz"
    ase.io.write(data, frames, format="extxyz")
    config = config_file(tmp_path, good_config(inputs, **{"data.train": str(data)}))
    with pytest.warns(DataWarning, match=r"mev\.xyz: the forces have an RMS of .* meV/Å"):
        load_training_data(load_config(config))
    # the command as a user runs it: pytest would swallow the warning in this process
    result = subprocess.run([sys.executable, "-m", "mlff", "train", str(config), "--out",
                             str(tmp_path / "run"), "--quiet"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "DataWarning" in result.stderr and "mev.xyz: the forces have an RMS" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "run" / "model.mlff").is_file()


def test_oracle_returning_nan_records_a_failed_label(inputs, tmp_path, capsys):
    """An oracle result with NaN is stored as a failure with its reason, never as a label;
    the labels already in the store stay."""
    from mlff.active.store import STATUS_FAILED, STATUS_OK, LabelStore
    from mlff.oracles import load_oracle
    from mlff.oracles.compute import compute_label

    oracle = tmp_path / "nan.yaml"
    oracle.write_text("type: ase\ncalculator: tests.oracles.calculators:NaNCalculator\n")
    atoms = bulk("Cu", cubic=True)
    atoms.rattle(0.05, seed=1)
    structures = tmp_path / "cu.xyz"
    ase.io.write(structures, atoms)
    result = compute_label(load_oracle(oracle).config, atoms)
    assert not result.ok and result.atoms is None
    assert "non-finite energy" in result.reason

    store_path = tmp_path / "labels.db"
    shutil.copy(inputs.labels, store_path)
    status, out, err = run_cli(["label", structures, "--oracle", oracle, "--out", store_path,
                                "--workers", "1"], capsys)
    assert status == 0, err
    assert "Traceback" not in out + err
    assert "failed: frame 0: the oracle returned a non-finite energy" in out
    store = LabelStore(store_path)
    assert store.count(STATUS_OK) == 1  # the label that was there before
    assert store.count(STATUS_FAILED) == 1
    [failure] = store.failures()
    assert "non-finite energy" in failure.info["reason"]


def test_left_handed_cell_equals_right_handed(inputs, tmp_path, capsys):
    """Two cell vectors swapped (same lattice, negative determinant): same energy, forces,
    stress through the calculator and the same metrics from `mlff evaluate`."""
    import mlff

    right = helpers.water()
    right.cell = [[5.0, 0.3, 0.0], [0.2, 5.5, 0.1], [0.0, 0.4, 6.0]]
    right.pbc = True
    right = helpers.with_random_labels(right, seed=0)
    left = right.copy()
    left.calc = right.calc
    left.set_cell(right.cell.array[[1, 0, 2]])
    assert np.linalg.det(left.cell.array) < 0 < np.linalg.det(right.cell.array)
    results = []
    for atoms in (right, left):
        work = atoms.copy()
        work.calc = mlff.MLFFCalculator(inputs.model)
        results.append((work.get_potential_energy(), work.get_forces(), work.get_stress()))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-10)
    np.testing.assert_allclose(results[1][1], results[0][1], atol=1e-10)
    np.testing.assert_allclose(results[1][2], results[0][2], atol=1e-10)
    metrics = []
    for name, atoms in (("right", right), ("left", left)):
        ase.io.write(tmp_path / f"{name}.xyz", atoms, format="extxyz")
        status, _, err = run_cli(["evaluate", inputs.model, tmp_path / f"{name}.xyz",
                                  "--json", tmp_path / f"{name}.json"], capsys)
        assert status == 0, err
        report = json.loads((tmp_path / f"{name}.json").read_text())
        metrics.append(report["files"][0]["metrics"]["overall"])
    for key in ("energy_mae_meV_per_atom", "forces_mae_meV_per_A", "stress_mae_meV_per_A3"):
        assert metrics[1][key] == pytest.approx(metrics[0][key], rel=1e-9), key


def test_cell_smaller_than_the_cutoff_equals_its_supercell(inputs):
    """A periodic cell shorter than the 4 Å cutoff (a water in a 2.9 Å box): every
    periodic image is seen, so the energy per atom and the stress equal the 2x2x2
    supercell's."""
    import mlff

    small = helpers.water()
    small.cell = np.diag([2.9, 3.1, 3.3])
    small.pbc = True
    big = small.repeat(2)
    energies, stresses = [], []
    for atoms in (small, big):
        atoms.calc = mlff.MLFFCalculator(inputs.model)
        energies.append(atoms.get_potential_energy() / len(atoms))
        stresses.append(atoms.get_stress())
    assert energies[1] == pytest.approx(energies[0], rel=1e-10)
    np.testing.assert_allclose(stresses[1], stresses[0], atol=1e-10)


# --- LAMMPS pair_coeff --------------------------------------------------------------------

LAMMPS_BOX = """units metal
atom_style atomic
region box block 0 8 0 8 0 8
create_box 2 box
create_atoms 1 single 1 1 1
create_atoms 2 single 3 1 1
mass * 12.0
pair_style mlff
"""


@pytest.fixture(scope="module")
def deployed_model(inputs, tmp_path_factory):
    """The tiny model deployed for LAMMPS, with the plugin (skipped without a compiler)."""
    from mlff.calculators.lammps import build
    from mlff.calculators.lammps.deploy import deployed_metadata, save_deployed, script_model
    from mlff.uq.io import load_model

    try:
        build.build_plugin()
    except build.PluginBuildError as exc:
        if "not found" in str(exc):
            pytest.skip(str(exc))
        raise
    path = tmp_path_factory.mktemp("deployed") / "model.pt"
    scripted = script_model(load_model(inputs.model), dtype="float64")
    save_deployed(scripted, path, deployed_metadata(scripted, {}))
    return path


def lammps_error(commands: str) -> str:
    from mlff.calculators.lammps.runtime import create_lammps

    lmp = create_lammps()
    try:
        with pytest.raises(Exception) as caught:  # noqa: B017 (LAMMPS raises plain Exception)
            lmp.commands_string(commands)
    finally:
        lmp.close()
    return str(caught.value)


def _garbage_pt(tmp, deployed):
    path = tmp / "garbage.pt"
    path.write_bytes(bytes(range(256)) * 16)
    return path, ["cannot load", "garbage.pt", "as a TorchScript model", "mlff deploy"]


def _truncated_pt(tmp, deployed):
    path = tmp / "truncated.pt"
    path.write_bytes(deployed.read_bytes()[: deployed.stat().st_size // 2])
    return path, ["cannot load", "truncated.pt", "mlff deploy"]


def _empty_pt(tmp, deployed):
    path = tmp / "empty.pt"
    path.write_bytes(b"")
    return path, ["empty.pt", "mlff deploy"]


def _mlff_file_given(tmp, deployed, model=None):
    path = tmp / "model.mlff"
    shutil.copy(model, path)
    return path, ["model.mlff", "as a TorchScript model", "mlff deploy"]


def _missing_pt(tmp, deployed):
    return tmp / "none.pt", ["cannot read model file", "none.pt", "mlff deploy"]


LAMMPS_CASES = {
    "pair-coeff-garbage-model": (_garbage_pt, "cannot load 'garbage.pt' as a TorchScript model"),
    "pair-coeff-truncated-model": (_truncated_pt, "cannot load 'truncated.pt' ..."),
    "pair-coeff-empty-model": (_empty_pt, "'empty.pt' ... `mlff deploy`"),
    "pair-coeff-mlff-file-not-deployed": (_mlff_file_given, "cannot load 'model.mlff' as a TorchScript model"),
    "pair-coeff-missing-model": (_missing_pt, "cannot read model file 'none.pt'"),
}


@pytest.mark.parametrize("name", sorted(LAMMPS_CASES))
def test_lammps_pair_coeff_bad_model(name, deployed_model, inputs, tmp_path):
    make, _ = LAMMPS_CASES[name]
    if make is _mlff_file_given:
        path, expect = make(tmp_path, deployed_model, inputs.model)
    else:
        path, expect = make(tmp_path, deployed_model)
    message = lammps_error(LAMMPS_BOX + f"pair_coeff * * {path} C H\nrun 0")
    for fragment in expect:
        assert fragment in message, (fragment, message)


def test_lammps_pair_coeff_unknown_element(deployed_model):
    message = lammps_error(LAMMPS_BOX + f"pair_coeff * * {deployed_model} C Fe\nrun 0")
    assert "element 'Fe' (atom type 2) is not in the model" in message and "H C O" in message


# ---------------------------------------------------------------------------------------

OTHER_CASES = [
    ("forces-1000x-too-large", "mlff train + load_training_data",
     "DataWarning: mev.xyz: the forces have an RMS of ... eV/Å ... meV/Å? (trains)"),
    ("oracle-returns-nan", "mlff label + compute_label",
     "failed: frame 0: the oracle returned a non-finite energy (stored as failed)"),
    ("left-handed-cell", "mlff evaluate + MLFFCalculator", "same results as right-handed"),
    ("cell-smaller-than-cutoff", "MLFFCalculator", "same energy/atom as the 2x2x2 supercell"),
    ("lammps-cell-smaller-than-cutoff", "LAMMPS pair_style mlff", "same as the ASE calculator"),
    ("lammps-left-handed-cell", "LAMMPS pair_style mlff", "same as the ASE calculator"),
    *[(name, "LAMMPS pair_coeff", expect) for name, (_, expect) in sorted(LAMMPS_CASES.items())],
    ("pair-coeff-unknown-element", "LAMMPS pair_coeff", "element 'Fe' (atom type 2) is not in the model"),
]


def test_case_list(capsys):
    """Print every case (id -> entry point -> expected message); at least 40 errors."""
    ids = [c.id for c in CASES] + [name for name, _, _ in OTHER_CASES]
    assert len(set(ids)) == len(ids)
    assert len(CASES) + len(LAMMPS_CASES) + 1 >= 40
    with capsys.disabled():
        print(f"\nbad-input corpus: {len(CASES) + len(LAMMPS_CASES) + 1} rejected inputs, "
              f"{len(OTHER_CASES) - len(LAMMPS_CASES) - 1} accepted (a warning, a recorded "
              "failure, or results checked)")
        for c in CASES:
            print(f"  {c.id} -> {c.entry} -> {c.expect}")
        for name, entry, expect in OTHER_CASES:
            print(f"  {name} -> {entry} -> {expect}")


@pytest.mark.parametrize("cell", ["smaller-than-cutoff", "left-handed"])
def test_lammps_small_and_left_handed_cells(cell, deployed_model, inputs, tmp_path):
    """LAMMPS on a cell shorter than the 4 Å cutoff, and on a left-handed cell: the
    energy per atom, forces and stress of the ASE calculator on the same structure."""
    import mlff
    from tests.calculators.lammps.support import run_in_process

    atoms = helpers.water()
    if cell == "left-handed":
        atoms.cell = np.array([[5.0, 0.3, 0.0], [0.2, 5.5, 0.1], [0.0, 0.4, 6.0]])[[1, 0, 2]]
        assert np.linalg.det(atoms.cell.array) < 0
    else:
        atoms.cell = np.diag([2.9, 3.1, 3.3])
    atoms.pbc = True
    result = run_in_process(deployed_model, atoms, ["H", "C", "O"], tmp_path)
    try:
        reference = atoms.copy()
        reference.calc = mlff.MLFFCalculator(inputs.model)
        frame = result["atoms"]  # LAMMPS's rotated frame: compare invariants and rotated forces
        rotation = np.linalg.solve(reference.cell.array, frame.cell.array)
        assert result["energy"] == pytest.approx(reference.get_potential_energy(), rel=1e-8)
        np.testing.assert_allclose(result["forces"], reference.get_forces() @ rotation, atol=1e-7)
        stress = reference.get_stress(voigt=False)
        np.testing.assert_allclose(result["stress"], rotation.T @ stress @ rotation, atol=1e-7)
    finally:
        result["lmp"].close()
