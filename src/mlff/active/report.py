"""The per-iteration report of ``mlff learn``: ``report.md`` and uncertainty histograms."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def uncertainty_histogram(sigma: np.ndarray, lower: float, upper: float, path: Path,
                          title: str = "") -> Path:
    """PNG histogram of the explored frames' ``max_forces_std`` (eV/Å, log bins) with the
    trust levels marked."""
    figure = Figure(figsize=(5.5, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    values = np.asarray(sigma, dtype=np.float64)
    values = values[values > 0]
    if len(values):
        low = min(values.min(), lower) / 1.5
        high = max(values.max(), upper) * 1.5
        axes.hist(values, bins=np.geomspace(low, high, 40), color="tab:blue", alpha=0.8)
    axes.axvline(lower, color="tab:green", ls="--", label=f"lower {lower:g}")
    axes.axvline(upper, color="tab:red", ls="--", label=f"upper {upper:g}")
    axes.set_xscale("log")
    axes.set_xlabel("max force disagreement per frame (eV/Å)")
    axes.set_ylabel("frames")
    axes.legend(fontsize="small")
    axes.set_title(f"{title}: {len(sigma)} explored frames", fontsize="medium")
    figure.savefig(path, dpi=110)
    return path


_COLUMNS = [
    ("iteration", "iter", "{}"),
    ("train_labels", "trained on", "{}"),
    ("explored_frames", "explored", "{}"),
    ("accurate_fraction", "accurate", "{:.2f}"),
    ("candidate_fraction", "candidate", "{:.2f}"),
    ("failed_fraction", "failed", "{:.2f}"),
    ("walkers_stopped", "walkers stopped", "{}"),
    ("labelled", "new labels", "{}"),
    ("label_failures", "oracle failures", "{}"),
]


def write_report(out_dir: Path, summaries: list[dict[str, Any]], config: Any,
                 final: dict[str, Any] | None = None) -> Path:
    """(Re)write ``out_dir/report.md`` from the iteration summaries."""
    s = config.select
    lines = [
        "# Active learning report", "",
        f"Oracle: `{config.oracle if isinstance(config.oracle, str) else config.oracle}`; "
        f"selection: {s.strategy}, trust levels {s.lower:g}-{s.upper:g} eV/Å on the max force "
        f"disagreement, at most {s.max_labels} labels per iteration.", "",
        "Each row: the committee trained on the labels so far, explored by MD, then the "
        "selected frames labelled. Test errors are that committee's on the fixed test set.", "",
    ]
    header = [title for _, title, _ in _COLUMNS] + ["test F MAE (meV/Å)", "test E MAE (meV/atom)"]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for summary in summaries:
        cells = [fmt.format(summary[key]) for key, _, fmt in _COLUMNS]
        test = summary.get("test") or {}
        cells.append(_number(test.get("forces_mae_meV_per_A")))
        cells.append(_number(test.get("energy_mae_meV_per_atom")))
        lines.append("| " + " | ".join(cells) + " |")
    if final and final.get("kept", "final") != "final":
        lines += ["", f"Stopped by: {final['stop_reason']}. The committee trained on all "
                      f"{final['total_labels']} labels (`final/`) was worse on the test set "
                      f"({final['kept_reason']}), so the final model `{final['model']}` is "
                      f"{final['kept']}'s committee."]
    elif final:
        test = final.get("test") or {}
        lines += ["", f"Stopped by: {final['stop_reason']}. Final model: `{final['model']}`"
                  + (f", trained on {final['total_labels']} labels; test force MAE "
                     f"{_number(test.get('forces_mae_meV_per_A'))} meV/Å, energy MAE "
                     f"{_number(test.get('energy_mae_meV_per_atom'))} meV/atom."
                     if test else ".")]
    lines += ["", "## Uncertainty of the explored frames", ""]
    for summary in summaries:
        n = summary["iteration"]
        lines.append(f"![iteration {n}](iter_{n:03d}/uncertainty.png)")
    path = out_dir / "report.md"
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
