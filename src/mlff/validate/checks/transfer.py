"""Check 2, transferability: errors on test sets from other conditions than the training
data (higher temperature, other phases, surfaces, defects, reaction paths), each beside
the in-distribution error, with the committee's uncertainty on each set.

For each set: energy MAE (meV/atom), force MAE and RMSE (meV/Å), stress MAE (meV/Å³),
the ratio of its force MAE to the in-distribution one, and, for a committee, the mean
per-atom force spread σ (meV/Å) and energy spread (meV/atom). A committee that knows what
it does not know shows σ growing with the error from set to set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase.calculators.calculator import BaseCalculator

from mlff.validate.errors import group_metrics
from mlff.validate.figures import FigureSink, new_figure
from mlff.validate.labelled import EvaluationCache, LabelledSet, SetEvaluation
from mlff.validate.result import CheckResult, Headline, Table, fmt

NAME = "transfer"
TITLE = "Transferability: errors under other conditions"


@dataclass
class TransferOptions:
    """Settings of the transferability check.

    Attributes:
        max_ratio: a set whose force MAE exceeds ``max_ratio`` x the in-distribution
            force MAE is marked as failing in the summary (``None``: no verdict).
    """

    max_ratio: float | None = None


def run(
    model: BaseCalculator,
    in_distribution: LabelledSet | None,
    others: Sequence[LabelledSet],
    out_dir,
    options: TransferOptions | None = None,
    cache: EvaluationCache | None = None,
) -> CheckResult:
    """Errors of ``model`` on each set of ``others`` beside those on ``in_distribution``.

    Args:
        model: the model's ASE calculator.
        in_distribution: test structures like the training data, or ``None`` (the
            ratios are then left out).
        others: sets from other conditions, each with a name.
        out_dir: folder for the figure.
        options: settings; defaults of :class:`TransferOptions`.
        cache: evaluations shared with other checks.
    """
    options = options or TransferOptions()
    cache = cache or EvaluationCache(model)
    sets = ([in_distribution] if in_distribution is not None else []) + list(others)
    rows = {labelled.name: set_summary(cache(labelled)) for labelled in sets}
    base = rows[in_distribution.name] if in_distribution is not None else None
    for name, row in rows.items():
        if base and base.get("forces_mae_meV_per_A") and "forces_mae_meV_per_A" in row:
            row["forces_mae_ratio"] = row["forces_mae_meV_per_A"] / base["forces_mae_meV_per_A"]
        row["in_distribution"] = in_distribution is not None and name == in_distribution.name
    result = CheckResult(NAME, TITLE, summary={"sets": rows})
    committee = all("mean_forces_std_meV_per_A" in row for row in rows.values())
    result.tables.append(_table(rows, committee))
    result.headlines = [_headline(name, row, options) for name, row in rows.items()
                        if not row["in_distribution"] and "forces_mae_meV_per_A" in row]
    result.figures.append(_figure(rows, committee, FigureSink(out_dir, NAME)))
    if in_distribution is None:
        result.notes.append("No in-distribution test set was given (--data): errors are shown "
                            "without the ratio to the in-distribution error.")
    if not committee:
        result.notes.append("The model is not a committee (no `forces_std` in its results): "
                            "the uncertainty on each set is not shown.")
    return result


def set_summary(evaluation: SetEvaluation) -> dict:
    """Metrics of one set (see :mod:`mlff.validate.errors`) plus the mean committee spreads."""
    row = group_metrics(evaluation.predictions, evaluation.references, np.arange(len(evaluation)))
    if evaluation.has_uncertainty:
        row["mean_forces_std_meV_per_A"] = 1000.0 * float(np.mean(np.concatenate(
            evaluation.forces_std)))
        row["mean_energy_std_meV_per_atom"] = 1000.0 * float(np.nanmean(
            evaluation.energy_std_per_atom))
    return row


def _headline(name: str, row: dict, options: TransferOptions) -> Headline:
    ratio = row.get("forces_mae_ratio")
    headline = Headline(f"force MAE on {name}", "meV/Å", row["forces_mae_meV_per_A"])
    if ratio is not None:
        headline.deviation, headline.deviation_unit = ratio, "× in-distribution"
        if options.max_ratio is not None:
            headline.target = options.max_ratio
            headline.target_text = f"≤ {options.max_ratio:g} × in-distribution"
            headline.passed = ratio <= options.max_ratio
    return headline


def _table(rows: dict[str, dict], committee: bool) -> Table:
    header = ["set", "structures", "E MAE (meV/atom)", "F MAE (meV/Å)", "F RMSE (meV/Å)",
              "σ MAE (meV/Å³)", "F MAE / in-dist."]
    if committee:
        header += ["mean σ_F (meV/Å)", "mean σ_E (meV/atom)"]
    out = []
    for name, row in rows.items():
        cells = [f"{name} (in-distribution)" if row["in_distribution"] else name,
                 str(row["num_structures"]), fmt(row.get("energy_mae_meV_per_atom")),
                 fmt(row.get("forces_mae_meV_per_A")), fmt(row.get("forces_rmse_meV_per_A")),
                 fmt(row.get("stress_mae_meV_per_A3")), fmt(row.get("forces_mae_ratio"))]
        if committee:
            cells += [fmt(row["mean_forces_std_meV_per_A"]),
                      fmt(row["mean_energy_std_meV_per_atom"])]
        out.append(cells)
    return Table("Errors per test set", header, out)


def _figure(rows: dict[str, dict], committee: bool, sink: FigureSink):
    """Force MAE and energy MAE per set; the committee's mean σ beside them."""
    names = list(rows)
    figure, (left, right) = new_figure(2, 1, width=max(4.0, 1.1 * len(names) + 2.0), height=3.6)
    x = np.arange(len(names))
    colors = ["tab:green" if rows[n]["in_distribution"] else "tab:blue" for n in names]
    data: dict = {"sets": names, "in_distribution": [rows[n]["in_distribution"] for n in names]}
    for ax, key, sigma_key, label in (
        (left, "forces_mae_meV_per_A", "mean_forces_std_meV_per_A", "force MAE (meV/Å)"),
        (right, "energy_mae_meV_per_atom", "mean_energy_std_meV_per_atom",
         "energy MAE (meV/atom)"),
    ):
        values = [rows[n].get(key, np.nan) for n in names]
        width = 0.4 if committee else 0.7
        ax.bar(x - (width / 2 if committee else 0), values, width, color=colors, label="error")
        data[key] = values
        if committee:
            sigma = [rows[n][sigma_key] for n in names]
            ax.bar(x + width / 2, sigma, width, color="tab:orange", label="committee mean σ")
            ax.legend(fontsize="small")
            data[sigma_key] = sigma
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylabel(label)
    return sink.save(figure, "sets", "Errors on each test set (green: in distribution), with "
                     "the committee's mean uncertainty beside them when the model is a "
                     "committee.", data)
