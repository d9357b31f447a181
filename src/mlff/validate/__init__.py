"""Validation of a model: test-set errors, parity plots."""

from mlff.validate.errors import Predictions, References, error_metrics, predict
from mlff.validate.evaluate import evaluate_file
from mlff.validate.parity import parity_plots

__all__ = ["Predictions", "References", "error_metrics", "evaluate_file", "parity_plots", "predict"]
