"""Validation of a model: test-set errors, parity plots, and the checks of `mlff validate`
(errors, transferability, MD stability, RDF, crystal properties, phonons, molecules, cost)
written as one Markdown report with PNG figures and JSON data."""

from mlff.validate.errors import Predictions, References, error_metrics, predict
from mlff.validate.evaluate import evaluate_file
from mlff.validate.labelled import LabelledSet, evaluate_set
from mlff.validate.parity import parity_plots
from mlff.validate.result import CheckResult, Headline
from mlff.validate.runner import (
    CHECKS,
    ValidationInputs,
    ValidationOptions,
    ValidationReport,
    run_validation,
)

__all__ = [
    "CHECKS",
    "CheckResult",
    "Headline",
    "LabelledSet",
    "Predictions",
    "References",
    "ValidationInputs",
    "ValidationOptions",
    "ValidationReport",
    "error_metrics",
    "evaluate_file",
    "evaluate_set",
    "parity_plots",
    "predict",
    "run_validation",
]
