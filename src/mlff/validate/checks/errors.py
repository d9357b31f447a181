"""Check 1, errors on test data: parity plots, error histograms, errors per config_type and
per element, and (for a committee) errors against the committee's uncertainty.

Units: energy per atom meV/atom, force components meV/Å, stress components meV/Å³ (the
metric names of :mod:`mlff.validate.errors`). Per element: the force components of the
atoms of that element. Uncertainty: per atom, the norm of the force error |ΔF_i| against
the committee's spread σ_i (``forces_std``); per structure, |ΔE|/N against
``energy_std_per_atom``. A calibrated committee puts the points around y = x.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase.data import chemical_symbols
from ase.calculators.calculator import BaseCalculator
from scipy import stats

from mlff.validate.errors import group_metrics
from mlff.validate.figures import FigureSink, new_figure, parity_axes, subsample
from mlff.validate.labelled import EvaluationCache, LabelledSet, SetEvaluation, concatenate
from mlff.validate.result import CheckResult, Headline, Table, fmt

NAME = "errors"
TITLE = "Errors on the test data"


@dataclass
class ErrorsOptions:
    """Settings of the errors check.

    Attributes:
        max_points: force components drawn in the parity plot and stored in its JSON
            (a seeded subsample; every metric uses all of them).
        bins: bins of the error histograms.
        uncertainty_bins: quantile bins of σ for the binned error-versus-uncertainty curve.
    """

    max_points: int = 20_000
    bins: int = 60
    uncertainty_bins: int = 10


def run(
    model: BaseCalculator,
    test: LabelledSet,
    out_dir,
    options: ErrorsOptions | None = None,
    cache: EvaluationCache | None = None,
) -> CheckResult:
    """Errors of ``model`` on the labelled structures of ``test``.

    Args:
        model: the model's ASE calculator (a committee's adds ``forces_std`` and
            ``energy_std_per_atom`` to its results).
        test: the test structures (e.g. several files joined by
            :func:`~mlff.validate.labelled.concatenate`).
        out_dir: folder for the figures.
        options: settings; defaults of :class:`ErrorsOptions`.
        cache: evaluations shared with other checks.

    Returns:
        Metrics overall, per config_type and per element, with their figures.
    """
    options = options or ErrorsOptions()
    cache = cache or EvaluationCache(model)
    evaluation = cache(test)
    sink = FigureSink(out_dir, NAME)
    result = CheckResult(NAME, TITLE)
    refs = evaluation.references
    overall = group_metrics(evaluation.predictions, refs, np.arange(len(evaluation)))
    per_type = {
        name: group_metrics(evaluation.predictions, refs, np.flatnonzero(refs.config_type == tag))
        for tag, name in enumerate(evaluation.config_types)
    }
    per_element = element_force_errors(evaluation)
    result.summary = {"set": test.name, "num_structures": len(evaluation), "overall": overall,
                      "config_types": per_type, "elements": per_element,
                      "evaluation_seconds": evaluation.seconds}
    result.headlines = _headlines(overall)
    result.tables.append(metrics_table("Errors per config_type (MAE / RMSE)",
                                       {**per_type, "all": overall}))
    if per_element:
        result.tables.append(Table(
            "Force errors per element (components of that element's atoms)",
            ["element", "atoms", "F MAE (meV/Å)", "F RMSE (meV/Å)"],
            [[el, str(v["num_atoms"]), fmt(v["forces_mae_meV_per_A"]),
              fmt(v["forces_rmse_meV_per_A"])] for el, v in per_element.items()],
        ))
    if _labelled_values(evaluation):
        result.figures.append(parity_figure(evaluation, sink, options, test.name))
        result.figures.append(histogram_figure(evaluation, sink, options, test.name))
    if len(per_type) > 1 or len(per_element) > 1:
        result.figures.append(group_figure(per_type, per_element, sink))
    if evaluation.has_uncertainty:
        summary, record = uncertainty_figure(evaluation, sink, options)
        result.summary["uncertainty"] = summary
        result.figures.append(record)
        result.tables.append(Table(
            "Errors against the committee's uncertainty",
            ["quantity", "Spearman ρ", "RMS error", "RMS σ", "ratio"],
            [[row, fmt(v["spearman"]), fmt(v["rms_error"]), fmt(v["rms_sigma"]), fmt(v["ratio"])]
             for row, v in summary.items()],
        ))
    else:
        result.notes.append("The model is not a committee (its calculator reports no "
                            "`forces_std`): errors against uncertainty are not shown.")
    return result


def _headlines(overall: dict) -> list[Headline]:
    rows = [("energy MAE", "meV/atom", "energy_mae_meV_per_atom"),
            ("force MAE", "meV/Å", "forces_mae_meV_per_A"),
            ("stress MAE", "meV/Å³", "stress_mae_meV_per_A3")]
    return [Headline(quantity, unit, overall[key]) for quantity, unit, key in rows
            if key in overall]


_COLUMNS = (
    ("E (meV/atom)", "energy_mae_meV_per_atom", "energy_rmse_meV_per_atom"),
    ("F (meV/Å)", "forces_mae_meV_per_A", "forces_rmse_meV_per_A"),
    ("σ (meV/Å³)", "stress_mae_meV_per_A3", "stress_rmse_meV_per_A3"),
)


def metrics_table(caption: str, groups: dict[str, dict]) -> Table:
    """A table of MAE / RMSE per group (rows) for each labelled quantity (columns)."""
    columns = [c for c in _COLUMNS if any(c[1] in g for g in groups.values())]
    rows = []
    for name, group in groups.items():
        cells = [f"{fmt(group[mae])} / {fmt(group[rmse])}" if mae in group else "—"
                 for _, mae, rmse in columns]
        rows.append([name, str(group["num_structures"]), *cells])
    return Table(caption, ["group", "structures", *(c[0] for c in columns)], rows)


def element_force_errors(evaluation: SetEvaluation) -> dict[str, dict[str, float | int]]:
    """Force MAE and RMSE (meV/Å) over the components of each element's atoms."""
    refs = evaluation.references
    labelled = np.flatnonzero(refs.has_forces)
    if len(labelled) == 0:
        return {}
    numbers = np.concatenate([evaluation.numbers[i] for i in labelled])
    error = 1000.0 * np.concatenate(
        [evaluation.predictions.forces[i] - refs.forces[i] for i in labelled])
    out: dict[str, dict[str, float | int]] = {}
    for z in sorted(set(numbers.tolist())):
        component = error[numbers == z].ravel()
        out[chemical_symbols[z]] = {
            "num_atoms": int((numbers == z).sum()),
            "forces_mae_meV_per_A": float(np.mean(np.abs(component))),
            "forces_rmse_meV_per_A": float(np.sqrt(np.mean(component**2))),
        }
    return out


def _labelled_values(evaluation: SetEvaluation) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reference and model values of each labelled quantity (energy per atom eV/atom,
    force components eV/Å, stress components meV/Å³)."""
    refs, pred = evaluation.references, evaluation.predictions
    out = {}
    energy = np.flatnonzero(refs.has_energy)
    if len(energy):
        out["energy"] = (refs.energy[energy] / refs.num_atoms[energy],
                         pred.energy[energy] / refs.num_atoms[energy])
    forces = np.flatnonzero(refs.has_forces)
    if len(forces):
        out["forces"] = (np.concatenate([refs.forces[i].ravel() for i in forces]),
                         np.concatenate([pred.forces[i].ravel() for i in forces]))
    stress = [i for i in range(len(pred)) if refs.has_stress[i] and pred.stress[i] is not None]
    if stress:
        out["stress"] = (1000.0 * np.stack([refs.stress[i] for i in stress]).ravel(),
                         1000.0 * np.stack([pred.stress[i] for i in stress]).ravel())
    return out


_PARITY = {"energy": ("energy per atom", "eV/atom", 1000.0, "meV/atom"),
           "forces": ("force components", "eV/Å", 1000.0, "meV/Å"),
           "stress": ("stress components", "meV/Å³", 1.0, "meV/Å³")}


def parity_figure(evaluation: SetEvaluation, sink: FigureSink, options: ErrorsOptions,
                  title: str):
    """Model against reference, one panel per labelled quantity; MAE in each title."""
    values = _labelled_values(evaluation)
    figure, axes = new_figure(len(values), 1, width=4.2, height=4.2)
    axes = np.atleast_1d(axes)
    data = {}
    for ax, (key, (reference, model)) in zip(axes, values.items(), strict=True):
        label, unit, to_error, error_unit = _PARITY[key]
        mae = to_error * float(np.mean(np.abs(model - reference)))
        keep = subsample(len(reference), options.max_points)
        ax.scatter(reference[keep], model[keep], s=4 if key == "forces" else 10, alpha=0.5,
                   rasterized=True)
        parity_axes(ax, reference[keep], model[keep], unit)
        ax.set_title(f"{label}\nMAE {mae:.4g} {error_unit}", fontsize="medium")
        data[key] = {"unit": unit, "reference": reference[keep], "model": model[keep],
                     "num_values": len(reference), "num_drawn": len(keep),
                     "mae": mae, "mae_unit": error_unit}
    figure.suptitle(title, fontsize="medium")
    return sink.save(figure, "parity", "Model against reference for each labelled quantity "
                     "(energy per atom, force and stress components); MAE in the titles.", data)


def histogram_figure(evaluation: SetEvaluation, sink: FigureSink, options: ErrorsOptions,
                     title: str):
    """Distributions of the errors (model - reference), log counts."""
    values = _labelled_values(evaluation)
    figure, axes = new_figure(len(values), 1, width=4.0, height=3.4)
    axes = np.atleast_1d(axes)
    data = {}
    for ax, (key, (reference, model)) in zip(axes, values.items(), strict=True):
        label, _, to_error, error_unit = _PARITY[key]
        error = to_error * (model - reference)
        counts, edges = np.histogram(error, bins=options.bins)
        ax.stairs(counts, edges, fill=True, alpha=0.6)
        ax.set_yscale("log" if counts.max() > 20 else "linear")
        ax.set_xlabel(f"{label} error ({error_unit})")
        ax.set_ylabel("count")
        ax.axvline(0.0, color="black", lw=0.8)
        data[key] = {"unit": error_unit, "bin_edges": edges, "counts": counts,
                     "mean": float(error.mean()), "std": float(error.std())}
    figure.suptitle(title, fontsize="medium")
    return sink.save(figure, "histograms", "Distribution of the errors (model − reference) of "
                     "each labelled quantity.", data)


def group_figure(per_type: dict[str, dict], per_element: dict[str, dict], sink: FigureSink):
    """Bar charts: force MAE per config_type and per element (meV/Å)."""
    figure, axes = new_figure(2, 1, width=4.4, height=3.4)
    data = {}
    for ax, (kind, groups) in zip(axes, (("config_type", per_type), ("element", per_element)),
                                  strict=True):
        names = [n for n, g in groups.items() if "forces_mae_meV_per_A" in g]
        mae = [groups[n]["forces_mae_meV_per_A"] for n in names]
        rmse = [groups[n]["forces_rmse_meV_per_A"] for n in names]
        x = np.arange(len(names))
        ax.bar(x - 0.2, mae, 0.4, label="MAE")
        ax.bar(x + 0.2, rmse, 0.4, label="RMSE")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylabel("force error (meV/Å)")
        ax.set_title(f"per {kind}", fontsize="medium")
        ax.legend(fontsize="small")
        data[kind] = {"names": names, "forces_mae_meV_per_A": mae, "forces_rmse_meV_per_A": rmse}
    return sink.save(figure, "groups", "Force MAE and RMSE (meV/Å) per config_type and per "
                     "element.", data)


def uncertainty_figure(evaluation: SetEvaluation, sink: FigureSink, options: ErrorsOptions):
    """|ΔF_i| against σ_i per atom, |ΔE|/N against the energy spread per structure.

    Returns the summary (Spearman rank correlation, RMS error, RMS σ and their ratio,
    meV/Å and meV/atom) and the figure record.
    """
    refs, pred = evaluation.references, evaluation.predictions
    forces = np.flatnonzero(refs.has_forces)
    pairs = {}
    if len(forces):
        pairs["forces"] = (
            1000.0 * np.concatenate([evaluation.forces_std[i] for i in forces]),
            1000.0 * np.concatenate([np.linalg.norm(pred.forces[i] - refs.forces[i], axis=1)
                                     for i in forces]),
            "per-atom force", "meV/Å")
    energy = np.flatnonzero(refs.has_energy)
    if len(energy) and evaluation.energy_std_per_atom is not None:
        pairs["energy"] = (
            1000.0 * evaluation.energy_std_per_atom[energy],
            1000.0 * np.abs(pred.energy[energy] - refs.energy[energy]) / refs.num_atoms[energy],
            "energy per atom", "meV/atom")
    figure, axes = new_figure(len(pairs), 1, width=4.4, height=4.2)
    axes = np.atleast_1d(axes)
    summary, data = {}, {}
    for ax, (key, (sigma, error, label, unit)) in zip(axes, pairs.items(), strict=True):
        centres, binned = binned_rms(sigma, error, options.uncertainty_bins)
        keep = subsample(len(sigma), options.max_points)
        ax.scatter(sigma[keep], error[keep], s=4, alpha=0.3, rasterized=True, label="atoms"
                   if key == "forces" else "structures")
        ax.plot(centres, binned, "o-", color="tab:red", label="RMS error per σ bin")
        positive = np.concatenate([sigma[sigma > 0], error[error > 0]])
        low, high = (positive.min() / 1.5, positive.max() * 1.5) if positive.size else (1e-3, 1)
        ax.plot([low, high], [low, high], color="black", lw=0.8, label="y = x")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
        ax.set_xlabel(f"committee σ, {label} ({unit})")
        ax.set_ylabel(f"|error|, {label} ({unit})")
        ax.legend(fontsize="small", loc="upper left")
        rms_error, rms_sigma = float(np.sqrt(np.mean(error**2))), float(np.sqrt(np.mean(sigma**2)))
        rho = float(stats.spearmanr(sigma, error).statistic) if len(sigma) > 2 else float("nan")
        summary[key] = {"unit": unit, "spearman": rho, "rms_error": rms_error,
                        "rms_sigma": rms_sigma, "ratio": rms_error / rms_sigma if rms_sigma else
                        float("inf")}
        data[key] = {"unit": unit, "sigma": sigma[keep], "error": error[keep],
                     "bin_sigma": centres, "bin_rms_error": binned}
    record = sink.save(figure, "uncertainty", "Error against the committee's uncertainty: per "
                       "atom |ΔF_i| against σ_i (forces_std), per structure |ΔE|/N against "
                       "energy_std_per_atom; the red line is the RMS error in quantile bins of "
                       "σ (on y = x for a calibrated committee).", data)
    return summary, record


def binned_rms(sigma: np.ndarray, error: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean σ and RMS error in ``bins`` quantile bins of σ (fewer for few points)."""
    order = np.argsort(sigma)
    groups = [g for g in np.array_split(order, max(1, min(bins, len(sigma) // 5))) if len(g)]
    centres = np.array([sigma[g].mean() for g in groups])
    rms = np.array([np.sqrt(np.mean(error[g] ** 2)) for g in groups])
    return centres, rms


def join_sets(sets: Sequence[LabelledSet]) -> LabelledSet:
    """The test sets as one (the errors check runs on all of them together)."""
    if len(sets) == 1:
        return sets[0]
    return concatenate("+".join(s.name for s in sets), sets)
