"""Test-set errors: a model's predictions (:func:`mlff.models.predict.predict`) against the labels.

Per config_type groups of the metrics of :mod:`mlff.models.metrics` (names and units
there), which also defines :class:`References`; :class:`Predictions` and :func:`predict`
come from :mod:`mlff.models.predict`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlff.data.dataset import GraphDataset
from mlff.models.metrics import Metrics, References, group_metrics
from mlff.models.predict import Predictions, as_dataset, predict

__all__ = ["Metrics", "Predictions", "References", "as_dataset", "error_metrics",
           "group_metrics", "predict"]
OVERALL = "overall"
CONFIG_TYPES = "config_types"


def error_metrics(predictions: Predictions, dataset: GraphDataset) -> dict[str, Any]:
    """Errors of ``predictions`` against the labels of ``dataset``, overall and per config_type.

    Args:
        predictions: from :func:`predict` on ``dataset``.
        dataset: the labelled structures, in the same order.

    Returns:
        ``{"overall": metrics, "config_types": {name: metrics}}``; the metric names and
        units are listed in the module docstring.
    """
    if len(predictions) != len(dataset):
        raise ValueError(f"{len(predictions)=} != {len(dataset)=}")
    refs = References.from_dataset(dataset)
    result: dict[str, Any] = {OVERALL: group_metrics(predictions, refs, np.arange(len(dataset)))}
    result[CONFIG_TYPES] = {
        dataset.config_types[tag]: group_metrics(
            predictions, refs, np.flatnonzero(refs.config_type == tag)
        )
        for tag in sorted(set(refs.config_type.tolist()))
    }
    return result
