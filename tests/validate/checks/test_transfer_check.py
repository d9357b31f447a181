"""The transferability check: each set's errors, ratios to the in-distribution error,
and the committee's mean uncertainty per set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlff.calculators import MLFFCalculator
from mlff.uq.committee import Committee
from mlff.validate.checks import transfer
from mlff.validate.checks.errors import run as run_errors
from mlff.validate.labelled import EvaluationCache
from tests import helpers


def test_sets_beside_the_in_distribution_error(tmp_path, cu_model, cu_test_set, cu_hot_set):
    cache = EvaluationCache(cu_model)
    options = transfer.TransferOptions(max_ratio=1e-6)
    result = transfer.run(cu_model, cu_test_set, [cu_hot_set], tmp_path, options, cache)
    rows = result.summary["sets"]
    assert list(rows) == ["test", "hot"]
    assert rows["test"]["in_distribution"] and not rows["hot"]["in_distribution"]
    # the same numbers as the errors check computes on each set alone
    alone = run_errors(cu_model, cu_hot_set, tmp_path / "alone").summary["overall"]
    assert rows["hot"]["forces_mae_meV_per_A"] == pytest.approx(alone["forces_mae_meV_per_A"])
    ratio = rows["hot"]["forces_mae_meV_per_A"] / rows["test"]["forces_mae_meV_per_A"]
    assert rows["hot"]["forces_mae_ratio"] == pytest.approx(ratio)
    (headline,) = result.headlines
    assert headline.quantity == "force MAE on hot" and headline.passed is False
    assert any("not a committee" in note for note in result.notes)
    data = json.loads((tmp_path / "transfer-sets.json").read_text())["data"]
    assert data["sets"] == ["test", "hot"]
    assert data["forces_mae_meV_per_A"][1] == pytest.approx(rows["hot"]["forces_mae_meV_per_A"])


def test_without_in_distribution_set(tmp_path, cu_model, cu_hot_set):
    result = transfer.run(cu_model, None, [cu_hot_set], tmp_path)
    assert "forces_mae_ratio" not in result.summary["sets"]["hot"]
    assert any("No in-distribution" in note for note in result.notes)


def test_committee_uncertainty_per_set(tmp_path, cu_test_set, cu_hot_set):
    members = [helpers.build_potential("painn", species=(29,), e0s=(-0.1,), scale=0.5, seed=s)
               for s in range(2)]
    calculator = MLFFCalculator(Committee(members))
    result = transfer.run(calculator, cu_test_set, [cu_hot_set], tmp_path)
    rows = result.summary["sets"]
    for row in rows.values():
        assert row["mean_forces_std_meV_per_A"] > 0
        assert np.isfinite(row["mean_energy_std_meV_per_atom"])
    assert "mean σ_F (meV/Å)" in result.tables[0].header
