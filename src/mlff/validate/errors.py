"""Test-set errors: a model's predictions (:func:`mlff.models.predict.predict`) against the labels.

Per config_type groups of the metrics of :mod:`mlff.models.metrics` (names and units
there), which also defines :class:`References`; :class:`Predictions` and :func:`predict`
come from :mod:`mlff.models.predict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mlff.data.dataset import GraphDataset
from mlff.data.dispersion import dispersion_settings
from mlff.data.dispersion_labels import dispersion_labels
from mlff.data.readers import Structure
from mlff.models import predict as kernel
from mlff.models.metrics import Metrics, References, group_metrics
from mlff.models.predict import EnergyModel, Predictions, as_dataset

__all__ = ["Metrics", "Predictions", "References", "as_dataset", "error_metrics",
           "group_metrics", "predict"]
OVERALL = "overall"
CONFIG_TYPES = "config_types"


def predict(
    model: EnergyModel,
    data: GraphDataset | Sequence[Structure],
    batch_size: int = 32,
    device: str | torch.device | None = None,
) -> Predictions:
    """The model's predictions to compare with reference labels (:func:`mlff.models.predict.predict`).

    A model trained on labels minus D3 (``data.dispersion``) gets its D3 energy, forces
    and stress added back, so that its predictions compare with the full reference.
    Arguments, returns and errors as :func:`mlff.models.predict.predict`.
    """
    dataset = as_dataset(data, model.cutoff)
    predictions = kernel.predict(model, dataset, batch_size=batch_size, device=device)
    settings = dispersion_settings(getattr(model, "metadata", None))
    if settings is None:
        return predictions
    d3 = dispersion_labels(dataset, settings)
    forces = torch.split(d3["forces"], [len(f) for f in predictions.forces])
    return Predictions(
        energy=predictions.energy + d3["energy"].numpy(),
        forces=[f + extra.numpy() for f, extra in zip(predictions.forces, forces, strict=True)],
        stress=[None if s is None else s + d3["stress"][i].numpy()
                for i, s in enumerate(predictions.stress)])


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
