"""``mlff export``: a float64 model file copied in float32 gives the same energies and forces
to float32 precision, and loads as float32 by default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlff import MLFFCalculator, load_model
from mlff.cli.main import main
from mlff.models import save_model
from mlff.models.io import read_metadata
from tests import helpers

from .test_cli import assert_user_error, mlff


@pytest.fixture(scope="module")
def float64_model(tmp_path_factory):
    """A tiny PaiNN with a realistic scale and E0s, saved in float64 with provenance."""
    potential = helpers.build_potential("painn", species=(1, 6, 8, 29), e0s=(-13.57, -1025.28,
                                        -2035.57, -1000.0), scale=0.8, shift=-0.3, seed=5)
    potential.metadata = {"test_metrics": {"forces_mae_meV_per_A": 12.5}}
    return save_model(potential, tmp_path_factory.mktemp("model") / "f64.mlff")


def test_export_to_float32_matches_float64(float64_model, tmp_path, capsys):
    out = tmp_path / "f32.mlff"
    assert main(["export", str(float64_model), "--dtype", "float32", "--out", str(out)]) == 0
    assert "float64 -> float32" in capsys.readouterr().out
    assert read_metadata(float64_model)["dtype"] == "float64"
    metadata = read_metadata(out)
    assert metadata["dtype"] == "float32"
    assert metadata["test_metrics"] == {"forces_mae_meV_per_A": 12.5}
    assert metadata["e0s"] == read_metadata(float64_model)["e0s"]
    assert load_model(out).dtype == torch.float32
    assert load_model(out, dtype="float64").dtype == torch.float64

    for atoms in (helpers.ethanol(seed=1), helpers.water(seed=2), helpers.copper(seed=3)):
        results = []
        for path in (float64_model, out):
            calc = MLFFCalculator(path)  # the file's dtype
            atoms = atoms.copy()
            atoms.calc = calc
            results.append((atoms.get_potential_energy(), atoms.get_forces(), calc.model.dtype))
        (e64, f64, d64), (e32, f32, d32) = results
        assert (d64, d32) == (torch.float64, torch.float32)
        assert e32 == pytest.approx(e64, rel=1e-5)
        np.testing.assert_allclose(f32, f64, atol=1e-4)
        assert np.abs(f64).max() > 1e-3  # a meaningful comparison


def test_export_back_to_float64_and_errors(float64_model, tmp_path):
    f32 = tmp_path / "f32.mlff"
    assert main(["export", str(float64_model), "--out", str(f32)]) == 0  # float32 by default
    f64 = tmp_path / "again64.mlff"
    assert main(["export", str(f32), "--dtype", "float64", "--out", str(f64)]) == 0
    assert read_metadata(f64)["dtype"] == "float64"
    assert load_model(f64).dtype == torch.float64

    assert_user_error(mlff("export", f32, "--out", f32), "input model")
    assert_user_error(mlff("export", tmp_path / "missing.mlff", "--out", tmp_path / "x.mlff"),
                      "missing.mlff")
    assert not (tmp_path / "x.mlff").exists()
