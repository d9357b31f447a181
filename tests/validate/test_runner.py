"""Selecting checks, recording a failing check, and a whole run with EMT."""

from __future__ import annotations

import json

import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from mlff.errors import ConfigError
from mlff.validate import ValidationInputs, ValidationOptions, run_validation
from mlff.validate.checks.crystal import CrystalOptions
from mlff.validate.checks.molecule import MoleculeOptions
from mlff.validate.runner import CHECKS, select_checks
from tests.validate.checks.conftest import cu_set


def test_automatic_selection_names_what_is_missing():
    inputs = ValidationInputs(crystal=bulk("Cu"))
    selected, not_run = select_checks(None, inputs, reference=None)
    assert selected == ["crystal", "phonons"]
    assert not_run["errors"] == "no labelled test data (--data)"
    assert not_run["cost"] == "no reference calculator (--reference)"
    assert set(selected) | set(not_run) == set(CHECKS)


def test_requested_checks_need_their_inputs():
    with pytest.raises(ConfigError, match="the molecule check cannot run: no molecule"):
        select_checks(["molecule"], ValidationInputs(), None)
    with pytest.raises(ConfigError, match="unknown check"):
        select_checks(["vibes"], ValidationInputs(), None)
    assert select_checks(["phonons", "crystal"], ValidationInputs(crystal=bulk("Cu")), None)[0] \
        == ["crystal", "phonons"]


def test_a_failing_check_is_recorded_and_the_others_run(tmp_path):
    lithium = Atoms("Li2", positions=[(0, 0, 0), (0, 0, 2.7)])  # EMT has no parameters for Li
    inputs = ValidationInputs(test_sets=[cu_set("test", 0, 0.05, count=2)], molecule=lithium)
    options = ValidationOptions(molecule=MoleculeOptions(parts=("modes",)))
    report = run_validation(EMT(), tmp_path, inputs, checks=["errors", "molecule"],
                            options=options)
    assert report.failed_checks == ["molecule"]
    errors, failed = report.results
    assert errors.status == "ok" and "NotImplementedError" in failed.error
    assert "This check failed" in report.markdown.read_text()
    with pytest.raises(NotImplementedError):
        run_validation(EMT(), tmp_path, inputs, checks=["molecule"], options=options,
                       keep_going=False)


def test_whole_run_writes_the_report(tmp_path):
    inputs = ValidationInputs(test_sets=[cu_set("test", 0, 0.05, count=2)],
                              transfer_sets=[cu_set("hot", 1, 0.2, count=2)],
                              structure=bulk("Cu", cubic=True), crystal=bulk("Cu", a=3.6),
                              molecule=molecule("H2O"))
    options = ValidationOptions(crystal=CrystalOptions(parts=("eos",)))
    options.cost.model_calls = 2
    options.cost.reference_calls = 1
    report = run_validation(EMT(), tmp_path, inputs, reference=EMT(),
                            checks=["errors", "transfer", "crystal", "cost"], options=options,
                            model_name="EMT as a model", reference_name="EMT")
    record = json.loads(report.json.read_text())
    assert list(record["checks"]) == ["errors", "transfer", "crystal", "cost"]
    assert record["model"] == "EMT as a model" and record["reference"] == "EMT"
    assert record["settings"]["options"]["crystal"]["parts"] == ["eos"]
    for check in record["checks"].values():
        for figure in check["figures"]:
            assert (tmp_path / figure["png"]).exists() and (tmp_path / figure["data"]).exists()
    text = report.markdown.read_text()
    assert "## 3. Crystal" in text and "lattice constant a" in text
