"""Parity plots (prediction against reference) as PNG files, drawn with matplotlib's Agg.

One plot per labelled quantity: energy per atom (eV/atom, coloured by config_type),
force components (eV/Å) and stress components (meV/Å³). Each title gives the MAE over
every labelled value, in the units of :mod:`mlff.validate.errors`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mlff.data.dataset import GraphDataset
from mlff.validate.errors import Predictions, References
from mlff.validate.figures import parity_axes

MAX_POINTS = 100_000  # points drawn per plot; the MAE always uses every value
ENERGY_PLOT = "energy_parity.png"
FORCES_PLOT = "forces_parity.png"
STRESS_PLOT = "stress_parity.png"


def parity_plots(
    predictions: Predictions, dataset: GraphDataset, out_dir: str | Path, prefix: str = "",
    title: str = "",
) -> list[Path]:
    """Write the parity plots of every labelled quantity into ``out_dir``.

    Args:
        predictions: from :func:`mlff.validate.errors.predict` on ``dataset``.
        dataset: the labelled structures, in the same order.
        out_dir: folder for the PNG files (created).
        prefix: prepended to each file name (``energy_parity.png``, ``forces_parity.png``,
            ``stress_parity.png``), e.g. the data file's name.
        title: first line of each plot's title, e.g. the data file's name.

    Returns:
        The paths written; a quantity without labels gets no plot.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    refs = References.from_dataset(dataset)
    written = []
    for name, draw in ((ENERGY_PLOT, _energy_plot), (FORCES_PLOT, _forces_plot),
                       (STRESS_PLOT, _stress_plot)):
        figure = draw(predictions, refs, dataset.config_types, title)
        if figure is not None:
            path = out_dir / f"{prefix}{name}"
            figure.savefig(path, dpi=120)
            written.append(path)
    return written


def _energy_plot(
    predictions: Predictions, refs: References, config_types: list[str], title: str
) -> Figure | None:
    """Energy per atom (eV/atom), one colour per config_type; MAE in meV/atom."""
    labelled = np.flatnonzero(refs.has_energy)
    if len(labelled) == 0:
        return None
    reference = refs.energy[labelled] / refs.num_atoms[labelled]
    predicted = predictions.energy[labelled] / refs.num_atoms[labelled]
    mae = 1000.0 * np.mean(np.abs(predicted - reference))
    figure, axes = _figure(f"energy per atom: MAE {mae:.4g} meV/atom", title)
    tags = refs.config_type[labelled]
    for tag in sorted(set(tags.tolist())):
        mask = tags == tag
        axes.scatter(reference[mask], predicted[mask], s=8, alpha=0.7, label=config_types[tag])
    if len(set(tags.tolist())) > 1:
        axes.legend(fontsize="small", markerscale=2)
    parity_axes(axes, reference, predicted, "eV/atom", "predicted")
    return figure


def _forces_plot(
    predictions: Predictions, refs: References, config_types: list[str], title: str
) -> Figure | None:
    """Force components (eV/Å); MAE in meV/Å."""
    labelled = np.flatnonzero(refs.has_forces)
    if len(labelled) == 0:
        return None
    reference = np.concatenate([refs.forces[i].ravel() for i in labelled])
    predicted = np.concatenate([predictions.forces[i].ravel() for i in labelled])
    mae = 1000.0 * np.mean(np.abs(predicted - reference))
    figure, axes = _figure(f"force components: MAE {mae:.4g} meV/Å", title)
    reference, predicted = _subsample(reference, predicted)
    axes.scatter(reference, predicted, s=2, alpha=0.4, rasterized=True)
    parity_axes(axes, reference, predicted, "eV/Å", "predicted")
    return figure


def _stress_plot(
    predictions: Predictions, refs: References, config_types: list[str], title: str
) -> Figure | None:
    """Stress components (meV/Å³) of 3D-periodic structures with a label."""
    labelled = [i for i in range(len(refs.energy))
                if refs.has_stress[i] and predictions.stress[i] is not None]
    if not labelled:
        return None
    reference = 1000.0 * np.stack([refs.stress[i] for i in labelled]).ravel()
    predicted = 1000.0 * np.stack([predictions.stress[i] for i in labelled]).ravel()
    mae = np.mean(np.abs(predicted - reference))
    figure, axes = _figure(f"stress components: MAE {mae:.4g} meV/Å³", title)
    axes.scatter(reference, predicted, s=6, alpha=0.6)
    parity_axes(axes, reference, predicted, "meV/Å³", "predicted")
    return figure


def _figure(what: str, title: str) -> tuple[Figure, object]:
    """Make a square figure on the Agg canvas (no GUI backend is ever touched)."""
    figure = Figure(figsize=(4.5, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(f"{title}\n{what}" if title else what, fontsize="medium")
    return figure, axes


def _subsample(reference: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most MAX_POINTS pairs, the same ones every time (seeded)."""
    if len(reference) <= MAX_POINTS:
        return reference, predicted
    keep = np.random.default_rng(0).choice(len(reference), MAX_POINTS, replace=False)
    return reference[keep], predicted[keep]
