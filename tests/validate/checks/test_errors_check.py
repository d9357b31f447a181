"""The errors check against independent computations: the batched `predict` path, numpy,
and EMT judged against its own labels; the committee's error-versus-uncertainty part."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.calculators.emt import EMT

from mlff.calculators import MLFFCalculator
from mlff.data import GraphDataset
from mlff.uq.committee import Committee
from mlff.validate.checks import errors
from mlff.validate.errors import error_metrics, predict
from mlff.validate.labelled import evaluate_set
from tests import helpers

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_reference_against_its_own_labels_has_zero_error(tmp_path, cu_test_set):
    result = errors.run(EMT(), cu_test_set, tmp_path)
    overall = result.summary["overall"]
    for key in ("energy_mae_meV_per_atom", "forces_mae_meV_per_A", "stress_mae_meV_per_A3"):
        assert overall[key] < 1e-9
    assert set(result.summary["config_types"]) == {"bulk", "vacancy"}


def test_metrics_equal_the_batched_prediction_path(tmp_path, cu_test_set, cu_potential,
                                                   cu_model):
    result = errors.run(cu_model, cu_test_set, tmp_path)
    dataset = GraphDataset.from_structures(cu_test_set.structures, cu_potential.cutoff)
    expected = error_metrics(predict(cu_potential, dataset), dataset)
    for key, value in expected["overall"].items():
        assert result.summary["overall"][key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
    for name, group in expected["config_types"].items():
        assert result.summary["config_types"][name]["forces_mae_meV_per_A"] == pytest.approx(
            group["forces_mae_meV_per_A"], rel=1e-9)
    assert result.summary["overall"]["forces_mae_meV_per_A"] > 1.0  # an untrained model


def test_per_element_errors_match_numpy(tmp_path, cu_test_set, cu_model):
    result = errors.run(cu_model, cu_test_set, tmp_path)
    errors_by_component = []
    for s in cu_test_set.structures:
        atoms = s.atoms.copy()
        atoms.calc = cu_model
        errors_by_component.append((atoms.get_forces() - s.forces).ravel())
    component = 1000.0 * np.concatenate(errors_by_component)
    cu = result.summary["elements"]["Cu"]
    assert cu["forces_mae_meV_per_A"] == pytest.approx(np.abs(component).mean(), rel=1e-9)
    assert cu["forces_rmse_meV_per_A"] == pytest.approx(np.sqrt((component**2).mean()), rel=1e-9)
    assert cu["num_atoms"] == sum(len(s) for s in cu_test_set.structures)


def test_figures_are_png_with_their_data(tmp_path, cu_test_set, cu_model):
    result = errors.run(cu_model, cu_test_set, tmp_path)
    names = {f.png.name for f in result.figures}
    assert {"errors-parity.png", "errors-histograms.png", "errors-groups.png"} <= names
    for figure in result.figures:
        assert figure.png.read_bytes()[:8] == PNG_MAGIC
        json.loads(figure.data.read_text())
    parity = json.loads((tmp_path / "errors-parity.json").read_text())["data"]
    assert set(parity) == {"energy", "forces", "stress"}
    histogram = json.loads((tmp_path / "errors-histograms.json").read_text())["data"]
    assert sum(histogram["forces"]["counts"]) == parity["forces"]["num_values"]
    assert any("not a committee" in note for note in result.notes)
    assert "uncertainty" not in result.summary


def test_committee_errors_against_uncertainty(tmp_path, cu_test_set):
    members = [helpers.build_potential("painn", species=(29,), e0s=(-0.1,), scale=0.5, seed=s)
               for s in range(3)]
    committee = Committee(members)
    calculator = MLFFCalculator(committee)
    result = errors.run(calculator, cu_test_set, tmp_path)
    uncertainty = result.summary["uncertainty"]
    assert set(uncertainty) == {"forces", "energy"}
    # the RMS σ equals the members' spread computed here, atom by atom
    evaluation = evaluate_set(calculator, cu_test_set)
    sigma = 1000.0 * np.concatenate(evaluation.forces_std)
    assert uncertainty["forces"]["rms_sigma"] == pytest.approx(np.sqrt((sigma**2).mean()))
    atoms = cu_test_set.structures[0].atoms.copy()
    member_forces = []
    for member in members:
        atoms.calc = MLFFCalculator(member)
        member_forces.append(atoms.get_forces())
    member_forces = np.stack(member_forces)
    spread = np.sqrt(((member_forces - member_forces.mean(0)) ** 2).sum(-1).mean(0))
    np.testing.assert_allclose(evaluation.forces_std[0], spread, rtol=1e-8)
    assert -1.0 <= uncertainty["forces"]["spearman"] <= 1.0
    assert (tmp_path / "errors-uncertainty.png").read_bytes()[:8] == PNG_MAGIC
    assert not any("not a committee" in note for note in result.notes)
