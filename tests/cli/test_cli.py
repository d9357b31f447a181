"""The ``mlff`` command, run as a user would (a subprocess): help, info, evaluate, md.

Every bad input must end with a non-zero exit status and a one-line message that names
the file (and frame), never a Python traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest

from mlff.cli.main import main
from tests import helpers

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def mlff(*args: str | Path) -> subprocess.CompletedProcess:
    """Run ``python -m mlff ARGS`` and capture its output."""
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "mlff", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=env)


def assert_user_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    """Non-zero exit, no traceback, and every ``expected`` string in the message."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert "error:" in result.stderr
    for text in expected:
        assert text in result.stderr, (text, result.stderr)


def test_help_lists_subcommands():
    result = mlff("--help")
    assert result.returncode == 0
    for name in ("train", "evaluate", "md", "info"):
        assert name in result.stdout


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("evaluate", ["meV/atom", "meV/Å", "--json", "--plots", "--batch-size", "--energy-key"]),
        ("md", ["--timestep", "fs", "--temperature", "K", "--pressure", "bar", "nve", "npt",
                "--frame", "--out"]),
    ],
)
def test_subcommand_help_describes_units(capsys, command, expected):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for item in expected:
        assert item in text, item


def test_info(model_file):
    result = mlff("info", model_file)
    assert result.returncode == 0, result.stderr
    assert "painn" in result.stdout and "H C O" in result.stdout


def test_evaluate_writes_json_and_plots(model_file, data_file, tmp_path):
    result = mlff("evaluate", model_file, data_file, "--json", tmp_path / "metrics.json",
                  "--plots", tmp_path / "plots", "--batch-size", "3", "--dtype", "float64")
    assert result.returncode == 0, result.stderr
    assert "molecules.xyz" in result.stdout and "ethanol" in result.stdout
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["dtype"] == "float64"
    [file_report] = report["files"]
    assert file_report["num_structures"] == 4
    overall = file_report["metrics"]["overall"]
    assert overall["num_energy"] == 4 and overall["forces_mae_meV_per_A"] > 0
    assert set(file_report["metrics"]["config_types"]) == {"ethanol", "water"}
    plots = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert plots == ["molecules-energy_parity.png", "molecules-forces_parity.png"]
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == PNG_MAGIC for p in plots)


def _write_frames(path: Path, seed_offset: int = 0) -> list[str]:
    """Two labelled frames (water, ethanol) as extxyz; returns the file's lines."""
    frames = [helpers.with_random_labels(helpers.water(), seed=seed_offset),
              helpers.with_random_labels(helpers.ethanol(), seed=seed_offset + 1)]
    ase.io.write(path, frames, format="extxyz")
    return path.read_text().splitlines()


def truncated(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "truncated.xyz"
    lines = _write_frames(path)
    path.write_text("\n".join(lines[:-4]) + "\n")
    return path, ["truncated.xyz", "frame 1"]


def nan_coordinate(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "nan.xyz"
    lines = _write_frames(path)
    atom_line = 5 + 2 + 3  # water: 2 + 3 lines, then ethanol's header: atom 3 of frame 1
    fields = lines[atom_line].split()
    fields[1] = "nan"
    lines[atom_line] = " ".join(fields)
    path.write_text("\n".join(lines) + "\n")
    return path, ["nan.xyz:1", "atom 3"]


def unknown_element(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "nitrogen.xyz"
    frames = [helpers.with_random_labels(helpers.water(), seed=0),
              helpers.with_random_labels(helpers.ethanol(), seed=1)]
    frames[1].numbers[2] = 7
    ase.io.write(path, frames, format="extxyz")
    return path, ["nitrogen.xyz:1", "element N", "H, C, O"]


def garbage_binary(tmp_path: Path) -> tuple[Path, list[str]]:
    path = tmp_path / "garbage.xyz"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return path, ["garbage.xyz"]


def missing_path(tmp_path: Path) -> tuple[Path, list[str]]:
    return tmp_path / "does_not_exist.xyz", ["does_not_exist.xyz", "no such file"]


@pytest.mark.parametrize(
    "make_bad_input",
    [truncated, nan_coordinate, unknown_element, garbage_binary, missing_path],
)
def test_evaluate_bad_input_is_a_clear_error(model_file, tmp_path, make_bad_input):
    path, expected = make_bad_input(tmp_path)
    result = mlff("evaluate", model_file, path, "--json", tmp_path / "metrics.json")
    assert_user_error(result, *expected)
    assert not (tmp_path / "metrics.json").exists()


def test_md_writes_trajectory_and_log(model_file, data_file, tmp_path):
    out = tmp_path / "md"
    result = mlff("md", model_file, data_file, "--frame", "0", "--steps", "10", "--timestep",
                  "0.5", "--temperature", "300", "--ensemble", "nvt", "--log-interval", "5",
                  "--out", out)
    assert result.returncode == 0, result.stderr
    assert "final temperature" in result.stdout
    frames = ase.io.read(out / "trajectory.extxyz", index=":")
    assert [f.info["step"] for f in frames] == [0, 5, 10]
    assert frames[0].get_chemical_formula() == "C2H6O"
    assert frames[-1].get_forces().shape == (9, 3)
    assert len((out / "thermo.log").read_text().splitlines()) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 10 and summary["ensemble"] == "nvt"


def test_md_npt_on_molecule_is_a_clear_error(model_file, data_file, tmp_path):
    result = mlff("md", model_file, data_file, "--frame", "0", "--steps", "5", "--timestep",
                  "0.5", "--temperature", "300", "--ensemble", "npt", "--out", tmp_path / "md")
    assert_user_error(result, "NPT", "periodic in all three directions")


def test_messages_are_printed_as_text_not_markup(model_file, tmp_path):
    # `:-1:` is an emoji code and `[bold]` markup to rich; both are a user's text here
    path = tmp_path / "[bold]cu.xyz"
    ase.io.write(path, helpers.copper())
    result = mlff("md", model_file, path, "--frame", "-1", "--steps", "1", "--timestep", "1",
                  "--temperature", "300", "--out", tmp_path / "md")
    assert_user_error(result, "[bold]cu.xyz:-1: element Cu is not known")
