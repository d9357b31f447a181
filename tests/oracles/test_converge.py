"""Convergence scans of DFT settings (``mlff oracle check``)."""

from __future__ import annotations

import importlib.util

import ase.io
import numpy as np
import pytest

from mlff.cli.main import main
from mlff.oracles.converge import Step, converged_value
from tests.oracles import dft


def _step(value, d_energy, d_force):
    step = Step(value, None, 0.0, np.zeros((1, 3)), None, 1.0)
    step.d_energy, step.d_force = d_energy, d_force
    return step


def test_converged_value_is_where_every_finer_step_is_within_tolerance():
    steps = [_step(200, 0.01, 0.1), _step(300, 0.0005, 0.02), _step(400, 0.0008, 0.005),
             _step(500, 0.0002, 0.001), _step(600, 0.0, 0.0)]
    assert converged_value(steps) == 400  # 300 has forces 20 meV/Å off
    assert converged_value(steps, force_tol=0.05) == 300
    assert converged_value(steps[-2:]) == 500
    assert converged_value([_step(200, 0.1, 0.1), _step(300, 0.0, 0.0)]) is None


def test_check_refuses_oracles_without_a_cutoff(tmp_path, capsys):
    oracle, structure = tmp_path / "emt.yaml", tmp_path / "si.xyz"
    oracle.write_text("type: emt\n")
    ase.io.write(structure, dft.silicon2())
    assert main(["oracle", "check", str(oracle), str(structure)]) == 2
    assert "scans the cutoff and k-points of the cp2k and gpaw" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("gpaw") is None, reason="gpaw is not installed")
def test_check_prints_cutoff_and_kpoint_tables_with_gpaw(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    oracle, structure = tmp_path / "gpaw.yaml", tmp_path / "si.xyz"
    oracle.write_text("type: gpaw\ncutoff: 250.0\nkpoint_density: 1.0\n")
    ase.io.write(structure, dft.silicon2())
    assert main(["oracle", "check", str(oracle), str(structure), "--cutoffs", "200,250",
                 "--kpoint-densities", "0.4,0.9", "--force-tol", "1.0"]) == 0
    out = capsys.readouterr().out
    assert "cutoff (k-points as configured)" in out and "k-points (cutoff 250 eV)" in out
    assert "1x1x1" in out and "2x2x2" in out  # the meshes of 0.4 and 0.9 per Å⁻¹
    assert out.count("ref") >= 2 and "ΔE (meV/atom)" in out
