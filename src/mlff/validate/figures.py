"""Figures of the validation report: PNG files drawn on matplotlib's Agg canvas, each
written beside a JSON file holding the data it plots (so that every figure can be
redrawn or compared without the PNG)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mlff.validate.result import FigureRecord

DPI = 110
MODEL_COLOR = "tab:blue"
REFERENCE_COLOR = "black"


class FigureSink:
    """Writes the figures of one check into a folder, as ``<check>-<name>.png/.json``.

    Args:
        folder: where the files go (created on the first figure).
        check: the check's name, prefixed to every file name.
    """

    def __init__(self, folder: str | Path, check: str) -> None:
        self.folder = Path(folder)
        self.check = check

    def save(self, figure: Figure, name: str, caption: str, data: dict[str, Any]) -> FigureRecord:
        """Write ``figure`` as PNG and ``data`` (plus the caption) as JSON.

        Args:
            figure: a figure made with :func:`new_figure`.
            name: file stem after the check's prefix, e.g. ``"forces-parity"``.
            caption: one sentence saying what the figure shows, with units.
            data: the plotted values (arrays, numbers, strings); NaN and inf become null.

        Returns:
            The paths of both files and the caption.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        stem = f"{self.check}-{name}"
        png, data_path = self.folder / f"{stem}.png", self.folder / f"{stem}.json"
        figure.savefig(png, dpi=DPI)
        record = {"figure": png.name, "caption": caption, "data": data}
        data_path.write_text(json.dumps(to_json(record), indent=1) + "\n", encoding="utf-8")
        return FigureRecord(png=png, data=data_path, caption=caption)


def new_figure(columns: int = 1, rows: int = 1, width: float = 4.8, height: float = 3.8,
               **kwargs: Any) -> tuple[Figure, Any]:
    """A figure with ``rows`` x ``columns`` axes of about ``width`` x ``height`` inches each,
    on the Agg canvas (no GUI backend is touched). Returns the figure and its axes."""
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=True, **kwargs)
    return figure, axes


def parity_axes(axes: Axes, reference: np.ndarray, predicted: np.ndarray, unit: str,
                predicted_label: str = "model") -> None:
    """Finish a parity plot: the y = x line, equal square limits, few ticks, axis labels."""
    values = np.concatenate([np.ravel(reference), np.ravel(predicted)])
    values = values[np.isfinite(values)]
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    pad = 0.05 * (high - low) or 1e-3 * max(abs(low), 1.0)
    axes.plot([low - pad, high + pad], [low - pad, high + pad], color="black", lw=0.8)
    axes.set_xlim(low - pad, high + pad)
    axes.set_ylim(low - pad, high + pad)
    axes.set_aspect("equal")
    # few, slanted ticks: energies per atom have long labels (-467.72) that would overlap
    for axis in (axes.xaxis, axes.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=5))
    axes.tick_params(axis="x", labelrotation=30)
    axes.set_xlabel(f"reference ({unit})")
    axes.set_ylabel(f"{predicted_label} ({unit})")


def subsample(count: int, limit: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``limit`` of ``count`` points, the same ones every time."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, limit, replace=False))


def to_json(value: Any) -> Any:
    """``value`` as plain JSON data: arrays to lists, numpy scalars to Python, NaN to None."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value
