"""Evaluate a model on labelled structure files: errors per file and config_type, parity plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mlff.data.dataset import GraphDataset
from mlff.data.packed import is_packed, open_packed
from mlff.data.readers import LabelKeys
from mlff.errors import DataError
from mlff.models.potential import Potential
from mlff.validate.errors import References, error_metrics, predict
from mlff.validate.parity import parity_plots


def evaluate_file(
    potential: Potential,
    path: str | Path,
    keys: LabelKeys = LabelKeys(),
    batch_size: int = 32,
    device: str | torch.device | None = None,
    plots_dir: str | Path | None = None,
    plot_prefix: str | None = None,
) -> dict[str, Any]:
    """Read one labelled file, predict every structure and compute the errors.

    Args:
        potential: the model.
        path: any file ASE can read, with energy, forces and/or stress labels, or a
            data set packed by ``mlff data pack`` with the model's cutoff.
        keys: where the labels are stored in the file.
        batch_size: structures per forward pass.
        device: where to run; default the potential's device.
        plots_dir: write parity plots here when given.
        plot_prefix: file-name prefix of the plots; default ``"<file stem>-"``.

    Returns:
        ``{"file", "num_structures", "num_atoms", "metrics", "plots"}``, where
        ``metrics`` is :func:`mlff.validate.errors.error_metrics`'s result and ``plots``
        the PNG paths written.

    Raises:
        DataError: the file is missing, unreadable, holds bad values or no labels at all
            (the message names the file and the frame).
        UnknownElementError: a structure holds an element unknown to the model.
    """
    path = Path(path)
    if is_packed(path):  # labels and neighbour lists stored by `mlff data pack`
        dataset = open_packed(path, potential.cutoff)
    else:
        dataset = GraphDataset.from_file(path, potential.cutoff, keys, cache_dir=None)
    _require_labels(dataset, path, keys)
    predictions = predict(potential, dataset, batch_size=batch_size, device=device)
    metrics = error_metrics(predictions, dataset)
    plots: list[Path] = []
    if plots_dir is not None:
        prefix = f"{path.stem}-" if plot_prefix is None else plot_prefix
        plots = parity_plots(predictions, dataset, plots_dir, prefix=prefix, title=path.name)
    return {
        "file": str(path),
        "num_structures": len(dataset),
        "num_atoms": int(metrics["overall"]["num_atoms"]),
        "metrics": metrics,
        "plots": [str(p) for p in plots],
    }


def _require_labels(dataset: GraphDataset, path: Path, keys: LabelKeys) -> None:
    """Raise DataError when no structure of ``dataset`` has any label."""
    refs = References.from_dataset(dataset)
    if not (refs.has_energy.any() or refs.has_forces.any() or refs.has_stress.any()):
        raise DataError(
            f"{path}: no frame has an energy ('{keys.energy}'), forces ('{keys.forces}') or "
            f"stress ('{keys.stress}') label to compare with. Give the keys the file uses "
            "(LabelKeys; --energy-key/--forces-key/--stress-key on the command line)."
        )
