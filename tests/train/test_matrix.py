"""The training and inference matrix: every architecture in the registry × its structural
size knobs × float32/float64 × a training option × periodic, molecular and mixed-pbc data.

Each cell trains a tiny model for a few steps (EMA on unless the option replaces it),
saves, reloads, evaluates through the ASE calculator, checks that energies are finite and
that forces equal central finite differences of the energy (in float64, a float32 model
reloaded as float64), exports to the other dtype and compares. Options: plain EMA,
stage two with SWA, resume (equal to an uninterrupted run), a committee of two, fine-tuning
the trained model, DDP on two processes, and LAMMPS deployment (equal to the calculator).

The cells are generated: an architecture added to the registry without an entry in
``KNOBS`` fails ``test_every_architecture_has_knobs``; the knob combinations and the
options are spread so that each architecture meets every option and both dtypes.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
import yaml
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from mlff.calculators.ase import MLFFCalculator
from mlff.cli.main import main
from mlff.models import architectures
from mlff.models.io import read_metadata
from mlff.train.checkpoint import load_checkpoint
from mlff.uq.io import load_model
from tests import helpers

ETHANOL = Path(__file__).resolve().parents[2] / "examples" / "ethanol" / "train.xyz"

# the hyperparameters that change an architecture's structure (irreps, body order,
# parity, widths); every combination is trained at least once
KNOBS: dict[str, dict[str, list]] = {
    "mace": {"max_L": [0, 1, 2], "correlation": [1, 2, 3]},
    "nequip": {"l_max": [1, 2], "parity": [True, False]},
    "allegro": {"l_max": [1, 2], "parity": [True, False]},
    "painn": {"num_features": [8, 12], "radial_basis": ["bessel", "gaussian"]},
    "schnet": {"num_features": [8, 16], "num_layers": [1, 2]},
    "deeppot": {"type_one_side": [True, False]},
    "sevennet": {"l_max": [1, 2], "self_connection": ["linear", "nequip"]},
}
OPTIONS = ("ema", "stage_two_swa", "resume", "committee", "finetune", "ddp", "deploy")
DATA = ("periodic", "molecule", "mixed_pbc")
DTYPES = ("float32", "float64")
CUTOFF = 3.5


def _cells() -> list[tuple[str, dict, str, str, str]]:
    cells = []
    for a, architecture in enumerate(sorted(KNOBS)):
        knobs = KNOBS[architecture]
        combos = [dict(zip(knobs, values)) for values in itertools.product(*knobs.values())]
        for i in range(max(len(combos), len(OPTIONS))):
            dtype = DTYPES[(i + a) % 2]
            cells.append((architecture, combos[i % len(combos)], OPTIONS[i % len(OPTIONS)],
                          DATA[(i + a) % len(DATA)], dtype))
    return cells


CELLS = _cells()


def _cell_id(cell) -> str:
    architecture, knobs, option, data, dtype = cell
    sizes = ",".join(f"{k}={v}" for k, v in knobs.items())
    return f"{architecture}[{sizes}]-{option}-{data}-{dtype}"


def test_every_architecture_has_knobs():
    assert set(architectures()) == set(KNOBS), (
        "an architecture joins the matrix with its structural knobs in KNOBS")
    for architecture in KNOBS:  # and every option meets it in both dtypes across the matrix
        mine = [c for c in CELLS if c[0] == architecture]
        assert {c[2] for c in mine} == set(OPTIONS)
    for option in OPTIONS:
        assert {c[4] for c in CELLS if c[2] == option} == set(DTYPES)
        assert {c[3] for c in CELLS if c[2] == option} == set(DATA)
    print(f"\n{len(CELLS)} matrix cells")


def _labelled(frames, calculator=None):
    out = []
    for atoms in frames:
        if calculator is not None:
            atoms.calc = calculator
            results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
            if atoms.pbc.all():
                results["stress"] = atoms.get_stress()
            atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    return out


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """Six labelled frames each: Cu bulk (EMT), ethanol (DFT), a Cu(111) slab (EMT)."""
    root = tmp_path_factory.mktemp("matrix-data")
    periodic = []
    for k in range(6):
        atoms = bulk("Cu", "fcc", a=3.6 + 0.03 * (k % 3), cubic=True)
        atoms.rattle(0.08, seed=k)
        periodic.append(atoms)
    slabs = []
    for k in range(6):
        atoms = fcc111("Cu", size=(2, 2, 2), a=3.6, vacuum=4.0)
        atoms.pbc = (True, True, False)
        atoms.rattle(0.08, seed=10 + k)
        slabs.append(atoms)
    files = {"periodic": _labelled(periodic, EMT()), "mixed_pbc": _labelled(slabs, EMT()),
             "molecule": ase.io.read(ETHANOL, ":6")}
    paths = {}
    for name, frames in files.items():
        paths[name] = root / f"{name}.xyz"
        ase.io.write(paths[name], frames, format="extxyz")
    return paths


def _config(architecture, knobs, data_file, dtype, **training) -> dict:
    hyperparameters = helpers.full_hyperparameters(architecture, CUTOFF, **knobs)
    hyperparameters.pop("avg_num_neighbors", None)  # from the data, as a user's run does
    return {
        "seed": 0, "dtype": dtype,
        "data": {"train": str(data_file), "valid_fraction": 0.34, "e0s": "least_squares"},
        "model": hyperparameters,
        "training": {"batch_size": 2, "max_epochs": 2, "lr": 1e-3, **training},
    }


def _cli_train(config: dict, out: Path, *extra: str) -> None:
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "mlff", "train", str(path), "--out", str(out),
                             "--quiet", *extra], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def _frame(data_file: Path):
    atoms = ase.io.read(data_file, 0)
    atoms.calc = None
    return atoms


def _check_forces_are_gradients(model_path: Path, atoms) -> None:
    """Finite energies; forces = -dE/dr by central differences, in float64."""
    calc = MLFFCalculator(model_path, dtype="float64", skin=0.0)
    atoms = atoms.copy()
    atoms.calc = calc
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    assert np.isfinite(energy) and np.isfinite(forces).all()
    h = 1e-4
    for i, j in [(0, 0), (1, 2), (len(atoms) - 1, 1)]:
        shifted = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[i, j] += sign * h
            moved.calc = calc
            shifted.append(moved.get_potential_energy())
        numeric = -(shifted[0] - shifted[1]) / (2 * h)
        assert abs(numeric - forces[i, j]) <= 1e-6 + 1e-5 * abs(forces[i, j]), (i, j)


def _check_export(model_path: Path, dtype: str, atoms, tmp_path: Path) -> None:
    other = "float64" if dtype == "float32" else "float32"
    exported = tmp_path / f"export-{other}.mlff"
    assert main(["export", str(model_path), "--dtype", other, "--out", str(exported)]) == 0
    assert load_model(exported).dtype == getattr(torch, other)
    energies = []
    for path in (model_path, exported):
        copy = atoms.copy()
        copy.calc = MLFFCalculator(path, skin=0.0)
        energies.append(copy.get_potential_energy())
    assert energies[1] == pytest.approx(energies[0], rel=1e-5, abs=1e-5)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-8, msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS, ids=[_cell_id(c) for c in CELLS])
def test_cell(cell, datasets, tmp_path):
    run_cell(cell, datasets, tmp_path)


def run_cell(cell, datasets, tmp_path) -> None:
    """Train, save, reload, check and export one cell of the matrix."""
    from mlff import train

    architecture, knobs, option, data, dtype = cell
    data_file = datasets[data]
    config = _config(architecture, knobs, data_file, dtype)
    out = tmp_path / "run"
    if option == "stage_two_swa":
        config["training"]["stage_two"] = {"start_fraction": 0.5, "swa": True}
    if option == "committee":
        config["committee"] = {"size": 2, "processes": 1}
    if option == "ddp":
        _cli_train(config, out, "--nproc", "2")
    elif option == "resume":
        straight = train(config, out_dir=tmp_path / "straight", progress=False)
        first = dict(config, training={**config["training"], "max_epochs": 1})
        first_out = out
        train(first, out_dir=first_out, progress=False)
        train(config, out_dir=out, resume=True, progress=False)
        _assert_same_state(load_checkpoint(out / "last.ckpt")["model"],
                           load_checkpoint(straight.out_dir / "last.ckpt")["model"])
    else:
        train(config, out_dir=out, progress=False)
    model_path = out / "model.mlff"
    assert model_path.exists()
    if option == "finetune":
        tuned = {**config, "model": None,
                 "finetune": {"init_from": str(model_path), "lr_factor": 0.5},
                 "training": {**config["training"], "max_epochs": 1}}
        tuned.pop("model")
        train(tuned, out_dir=tmp_path / "tuned", progress=False)
        model_path = tmp_path / "tuned" / "model.mlff"
    atoms = _frame(data_file)
    _check_forces_are_gradients(model_path, atoms)
    _check_export(model_path, dtype, atoms, tmp_path)
    if option == "deploy":
        _check_lammps(model_path, atoms, tmp_path)


def _check_lammps(model_path: Path, atoms, tmp_path: Path) -> None:
    from mlff.calculators.lammps.build import build_plugin
    from mlff.calculators.lammps.deploy import deploy
    from tests.calculators.lammps.support import run_in_process

    build_plugin()
    deployment = deploy(model_path, tmp_path / "deployed", dtype="float64", build=False,
                            format="torchscript")
    names = read_metadata(model_path)["species_symbols"]
    lammps = run_in_process(deployment.model, atoms, names, tmp_path)
    reference = lammps["atoms"].copy()
    reference.calc = MLFFCalculator(model_path, dtype="float64", skin=0.0)
    np.testing.assert_allclose(lammps["forces"], reference.get_forces(), rtol=1e-7, atol=1e-8)
    assert lammps["energy"] == pytest.approx(reference.get_potential_energy(), rel=1e-9, abs=1e-8)


def test_a_model_that_keeps_batch_shaped_state_fails_its_cell(datasets, tmp_path, monkeypatch):
    """The matrix catches the defect behind the MACE max_L 1 + EMA crash: state that
    changes shape with the input."""
    from mlff.models import registry
    from mlff.models.painn import PaiNN

    class CachingPaiNN(PaiNN):
        class Config(PaiNN.Config):
            architecture: str = "caching_painn"

        def __init__(self, config, num_species):
            super().__init__(config, num_species)
            self.register_buffer("last_positions", torch.zeros(0, 3))

        def forward(self, graph):
            self.last_positions = graph["positions"].detach().clone()
            return super().forward(graph)

    registry._import_builtin()
    monkeypatch.setitem(registry._REGISTRY, "caching_painn", CachingPaiNN)
    monkeypatch.setitem(helpers.TINY_HYPERPARAMETERS, "caching_painn",
                        helpers.TINY_HYPERPARAMETERS["painn"])
    cell = ("caching_painn", {}, "ema", "molecule", "float64")
    with pytest.raises(RuntimeError, match="last_positions"):
        run_cell(cell, datasets, tmp_path)
