"""``mlff validate`` as a user runs it: a small Cu model trained on EMT data, checked
against EMT through an oracle config; user errors end with a message, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ase.io
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

import mlff
from mlff.cli.main import main
from mlff.cli.validate import CHECK_NAMES
from mlff.validate.runner import CHECKS
from tests import helpers

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def emt_frames(count: int, seed: int) -> list:
    frames = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.45 + 0.06 * (k % 6), cubic=True)
        atoms.rattle(0.08, seed=seed + k)
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                   "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["config_type"] = "strained" if k % 3 else "bulk"
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def cu_files(tmp_path_factory):
    """EMT data, a tiny PaiNN trained on it for a few epochs, and an EMT oracle config."""
    folder = tmp_path_factory.mktemp("validate-cli")
    ase.io.write(folder / "train.xyz", emt_frames(24, 0))
    ase.io.write(folder / "test.xyz", emt_frames(4, 100))
    config = {
        "seed": 0, "dtype": "float64",
        "data": {"train": str(folder / "train.xyz"), "valid_fraction": 0.25, "cache_dir": None},
        "model": {"architecture": "painn", "cutoff": 4.0, "num_features": 8, "num_layers": 1,
                  "num_radial": 6},
        "training": {"batch_size": 4, "max_epochs": 60, "lr": 0.005,
                     "loss": {"energy_weight": 100.0, "forces_weight": 10.0,
                              "stress_weight": 1000.0}},
    }
    result = mlff.train(config, out_dir=folder / "run")
    (folder / "emt.yaml").write_text("type: emt\n")
    return {"model": result.model_path, "test": folder / "test.xyz",
            "emt": folder / "emt.yaml", "folder": folder}


def test_check_names_match_the_library():
    assert CHECK_NAMES == CHECKS


def test_report_against_emt(cu_files, tmp_path):
    out = tmp_path / "report"
    command = [sys.executable, "-m", "mlff", "validate", str(cu_files["model"]),
               "--data", str(cu_files["test"]), "--reference", str(cu_files["emt"]),
               "--checks", "errors", "crystal", "phonons", "md", "cost",
               "--set", "crystal.parts=[eos, elastic]", "--set", "phonons.min_atoms=27",
               "--set", "phonons.mesh=[6,6,6]", "--md-time", "0.05", "--nvt-time", "0.05",
               "--timestep", "2", "--set", "cost.model_calls=2", "--set",
               "cost.reference_calls=1", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validation summary" in result.stdout and "report.md" in result.stdout
    text = (out / "report.md").read_text()
    for heading in ("Errors on the test data", "MD stability", "Crystal", "Phonons",
                    "Cost: model against reference"):
        assert heading in text
    assert "emt (" in text  # the oracle's name, as the reference
    record = json.loads((out / "report.json").read_text())
    assert set(record["checks"]) == {"errors", "md", "crystal", "phonons", "cost"}
    crystal = record["checks"]["crystal"]["summary"]
    assert crystal["reference"]["lattice_A"]["a"] == pytest.approx(3.5898, abs=1e-3)  # EMT's
    assert "a" in crystal["model"]["lattice_A"]
    assert record["checks"]["cost"]["summary"]["speedup"] > 0
    pngs = list((out / "figures").glob("*.png"))
    assert len(pngs) >= 8 and all(p.read_bytes()[:8] == PNG_MAGIC for p in pngs)


def test_user_errors_name_what_to_fix(cu_files, tmp_path, capsys):
    model, out = str(cu_files["model"]), str(tmp_path / "out")
    ethanol = tmp_path / "ethanol.xyz"
    ase.io.write(ethanol, [helpers.with_random_labels(helpers.ethanol())])
    cases = [
        (["--data", str(ethanol)], f"{ethanol}:0: element H, C, O is not known"),
        (["--checks", "molecule"], "the molecule check cannot run: no molecule (--molecule)"),
        (["--data", str(cu_files["test"]), "--set", "md.length=3"], "md has no option 'length'"),
        (["--data", str(tmp_path / "missing.xyz")], "missing.xyz"),
        (["--crystal", "Cu:fcc:wide"], "is not a number"),
    ]
    for extra, message in cases:
        assert main(["validate", model, "--out", out, *extra]) == 2
        assert message in capsys.readouterr().err
