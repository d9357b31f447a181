"""Uncertainty: committees of potentials, their disagreement, and its calibration."""

from mlff.uq.calibration import Calibration, calibration_metrics, fit_calibration
from mlff.uq.committee import Committee, disagreement
from mlff.uq.io import load_model, save_committee

__all__ = [
    "Calibration",
    "Committee",
    "calibration_metrics",
    "disagreement",
    "fit_calibration",
    "load_model",
    "save_committee",
]
