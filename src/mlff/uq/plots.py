"""The calibration figure: predicted versus observed errors, and the calibration curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from mlff.uq.calibration import Calibration, miscalibration_area, structure_values
from mlff.uq.evaluate import CommitteeErrors


def calibration_plot(
    calibration: Calibration, errors: CommitteeErrors, path: str | Path, title: str = ""
) -> Path:
    """Write a two-panel PNG: per-structure σ_s and ê_s against e_s (log-log, meV/Å), and
    the observed against the expected proportion of force components (see
    :func:`~mlff.uq.calibration.miscalibration_area`)."""
    sigma, observed = structure_values(errors.forces_std, errors.force_errors)
    predicted = calibration.predict(sigma)
    area, expected, fraction = miscalibration_area(
        calibration.predict(np.concatenate(errors.forces_std)), np.concatenate(errors.force_errors)
    )
    figure = Figure(figsize=(9, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    observed_meV, sigma_meV, predicted_meV = 1000 * observed, 1000 * sigma, 1000 * predicted
    left.scatter(observed_meV, sigma_meV, s=8, alpha=0.5, color="tab:gray", label="raw σ")
    left.scatter(observed_meV, predicted_meV, s=8, alpha=0.6, color="tab:blue",
                 label=f"calibrated ({calibration.method})")
    values = np.concatenate([observed_meV, sigma_meV, predicted_meV])
    values = values[values > 0]
    low, high = values.min() / 1.5, values.max() * 1.5
    left.plot([low, high], [low, high], color="black", lw=0.8)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlim(low, high)
    left.set_ylim(low, high)
    for axis in (left.xaxis, left.yaxis):  # ticks at 1, 2, 5 x 10^n, as plain numbers
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    left.set_xlabel("observed RMS force error per structure (meV/Å)")
    left.set_ylabel("predicted (meV/Å)")
    left.legend(loc="upper left", fontsize="small")
    right.plot(expected, fraction, color="tab:blue", label="observed")
    right.plot([0, 1], [0, 1], color="black", lw=0.8, label="ideal")
    right.fill_between(expected, expected, fraction, color="tab:blue", alpha=0.2)
    right.set_xlabel("expected proportion in interval")
    right.set_ylabel("observed proportion (force components)")
    right.set_title(f"miscalibration area {area:.3f}", fontsize="medium")
    right.legend(loc="upper left", fontsize="small")
    if title:
        figure.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
