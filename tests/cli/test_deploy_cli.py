"""``mlff deploy`` and ``mlff ipi --write-input`` from the command line."""

from __future__ import annotations

import json

from mlff.cli.main import main

from .test_cli import assert_user_error, mlff


def test_deploy_writes_the_folder(model_file, data_file, tmp_path, capsys):
    out = tmp_path / "deployed"
    assert main(["deploy", str(model_file), "--out", str(out), "--no-plugin",
                 "--dtype", "float32", "--structure", str(data_file),
                 "--format", "torchscript"]) == 0
    printed = capsys.readouterr().out
    assert "model.pt" in printed and "deployed = original" in printed and "format   torchscript" in printed
    metadata = json.loads((out / "model.json").read_text())
    assert metadata["dtype"] == "float32" and metadata["symbols"] == ["H", "C", "O"]
    assert (out / "in.lammps").is_file()


def test_deploy_with_a_structure(model_file, data_file, tmp_path):
    out = tmp_path / "deployed"
    assert main(["deploy", str(model_file), "--out", str(out), "--no-plugin",
                 "--structure", str(data_file), "--frame", "0", "--format", "torchscript"]) == 0
    assert "boundary        s s s" in (out / "in.lammps").read_text()
    assert "9 atoms" in (out / "data.lammps").read_text()


def test_deploy_without_a_starting_structure_asks_for_one(model_file, tmp_path):
    # a molecular model from a file that records no training structure
    assert_user_error(mlff("deploy", model_file, "--out", tmp_path / "x", "--no-plugin"),
                      "no starting structure", "--structure FILE")
    assert not (tmp_path / "x").exists()


def test_deploy_of_a_missing_model_is_a_user_error(tmp_path):
    assert_user_error(mlff("deploy", tmp_path / "none.mlff", "--out", tmp_path / "x", "--no-plugin"),
                      "none.mlff", "no such model file")


def test_ipi_writes_an_input(model_file, data_file, tmp_path, capsys):
    assert main(["ipi", str(model_file), str(data_file), "--write-input", str(tmp_path),
                 "--beads", "4", "--steps", "10"]) == 0
    text = (tmp_path / "input.xml").read_text()
    assert "nbeads='4'" in text and "<total_steps> 10 </total_steps>" in text
    assert "i-pi input.xml" in capsys.readouterr().out
