"""The command line with a model trained on labels minus D3: deploy, info, refusals."""

from __future__ import annotations

import pytest

from mlff.cli.main import main
from mlff.data.dispersion import D3Settings
from mlff.models import save_model
from tests import helpers

from .conftest import E0S, SPECIES
from .test_cli import assert_user_error, mlff

pytest.importorskip("dftd3")


def _d3_model(path, **settings):
    potential = helpers.build_potential("painn", species=SPECIES, e0s=E0S)
    potential.metadata = {"dispersion": D3Settings(**settings).to_metadata()}
    return save_model(potential, path)


def test_deploy_and_info_of_a_d3_model(data_file, tmp_path, capsys):
    model = _d3_model(tmp_path / "d3.mlff", method="d3zero", functional="b3lyp")
    out = tmp_path / "deployed"
    assert main(["deploy", str(model), "--out", str(out), "--no-plugin",
                 "--structure", str(data_file), "--format", "torchscript"]) == 0
    printed = capsys.readouterr().out
    assert "D3       pair_style hybrid/overlay mlff dispersion/d3 original b3-lyp 31.75" in printed
    text = (out / "in.lammps").read_text()
    assert "pair_coeff      * * mlff model.pt H C O" in text
    assert "pair_coeff      * * dispersion/d3 H C O" in text
    assert main(["info", str(model)]) == 0
    assert "d3zero (b3lyp; " in capsys.readouterr().out


def test_deploy_refuses_a_three_body_d3_model(data_file, tmp_path):
    model = _d3_model(tmp_path / "atm.mlff", method="d3bj", functional="pbe", three_body=True)
    assert_user_error(mlff("deploy", model, "--out", tmp_path / "x", "--no-plugin",
                           "--structure", data_file),
                      "no three-body (ATM) term", "ASE calculator")
    assert not (tmp_path / "x").exists()
