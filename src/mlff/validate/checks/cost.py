"""Check 7, cost: the time of one energy + forces call of the model and of the reference
method on the same structure, and the speed-up of the model.

Each timed call sees new positions (the structure displaced by a fixed, seeded 1e-4 Å
pattern times the call number), so no calculator can answer from its cache. The first
``warmup_calls`` of each calculator are not timed (model loading, JIT, first SCF guess).
Each call is timed twice: in wall-clock time, and in CPU time, that of this process and
of its child processes (a DFT code run as a subprocess, its MPI ranks), i.e. the
core-seconds the call occupied. Times are medians over the timed calls, ms; the speed-up
is the reference's median CPU time over the model's (the wall-clock ratio is reported
beside it): on a machine shared with other jobs, wall-clock time grows with the load
while CPU time does not. Both run from this process with the threads it has (reported
beside them).
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil
from ase import Atoms
from ase.calculators.calculator import BaseCalculator

from mlff.errors import ConfigError
from mlff.validate.figures import MODEL_COLOR, REFERENCE_COLOR, FigureSink, new_figure
from mlff.validate.result import CheckResult, Headline, Table, fmt

NAME = "cost"
TITLE = "Cost: model against reference"
STEP = 1e-4  # Å, displacement pattern between calls


@dataclass
class CostOptions:
    """Settings of the cost check.

    Attributes:
        model_calls: timed calls of the model.
        reference_calls: timed calls of the reference.
        warmup_calls: untimed calls of each before timing.
        min_speedup: the speed-up the summary asks for (``None``: no verdict).
    """

    model_calls: int = 20
    reference_calls: int = 3
    warmup_calls: int = 1
    min_speedup: float | None = None

    def check(self) -> None:
        """Raise :class:`ConfigError` for call counts below 1 (0 for warm-up)."""
        if self.model_calls < 1 or self.reference_calls < 1 or self.warmup_calls < 0:
            raise ConfigError(f"cost check: model_calls ({self.model_calls}) and reference_calls "
                              f"({self.reference_calls}) must be >= 1, warmup_calls "
                              f"({self.warmup_calls}) >= 0.")


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process's child processes: those
    still running (e.g. a DFT code's shell and MPI ranks) and those that have ended and
    been waited for. Finding the running ones walks the process table (about a
    millisecond), so callers read it outside what they time of this process."""
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = ended.ru_utime + ended.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:  # ended meanwhile
            continue
        total += times.user + times.system
    return total


def time_calls(calculator: BaseCalculator, structure: Atoms, calls: int, warmup: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Wall-clock and CPU seconds of each of ``calls`` energy + forces calls, after
    ``warmup`` untimed ones: two arrays of shape (calls,). CPU time is this process's
    and its children's (:func:`children_cpu_seconds`), each call's own: the walks of the
    process table before and after it are not counted."""
    pattern = np.random.default_rng(0).standard_normal((len(structure), 3))
    wall, cpu = [], []
    for k in range(warmup + calls):
        atoms = structure.copy()
        atoms.positions += (k + 1) * STEP * pattern
        atoms.calc = calculator
        children_start = children_cpu_seconds()
        own_start, start = time.process_time(), time.perf_counter()
        atoms.get_potential_energy()
        atoms.get_forces()
        elapsed, own = time.perf_counter() - start, time.process_time() - own_start
        children = children_cpu_seconds() - children_start
        if k >= warmup:
            wall.append(elapsed)
            cpu.append(own + children)
    return np.asarray(wall), np.asarray(cpu)


def threads() -> dict[str, Any]:
    """The thread settings that bound both timings."""
    import torch

    return {"torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "cpu_count": os.cpu_count()}


def run(model: BaseCalculator, structure: Atoms, out_dir, reference: BaseCalculator | None = None,
        options: CostOptions | None = None, reference_name: str = "reference") -> CheckResult:
    """Time the model and the reference on ``structure``.

    Args:
        model: the model's ASE calculator.
        structure: the structure both are timed on.
        out_dir: folder for the figure.
        reference: the reference calculator; without it only the model is timed.
        options: settings; defaults of :class:`CostOptions`.
        reference_name: how the reference is named in the figure (e.g. ``pyscf:PBE/def2-SVP``).
    """
    options = options or CostOptions()
    options.check()
    timings = {"model": time_calls(model, structure, options.model_calls, options.warmup_calls)}
    if reference is not None:
        timings["reference"] = time_calls(reference, structure, options.reference_calls,
                                          options.warmup_calls)
    summary: dict[str, Any] = {
        "structure": structure.get_chemical_formula(), "num_atoms": len(structure),
        "threads": threads(),
    }
    for who, (wall, cpu) in timings.items():
        summary[f"{who}_ms_per_call"] = 1000.0 * float(np.median(wall))
        summary[f"{who}_ms_all_calls"] = 1000.0 * wall
        summary[f"{who}_cpu_ms_per_call"] = 1000.0 * float(np.median(cpu))
        summary[f"{who}_cpu_ms_all_calls"] = 1000.0 * cpu
    result = CheckResult(NAME, TITLE, summary=summary)
    model_ms, model_cpu_ms = summary["model_ms_per_call"], summary["model_cpu_ms_per_call"]
    headline = Headline("model CPU time per energy+forces call", "ms", model_cpu_ms)
    rows = [["model", fmt(model_cpu_ms), fmt(model_ms), str(len(timings["model"][0]))]]
    if reference is not None:
        reference_ms = summary["reference_ms_per_call"]
        reference_cpu_ms = summary["reference_cpu_ms_per_call"]
        summary["speedup"] = reference_cpu_ms / model_cpu_ms
        summary["wall_speedup"] = reference_ms / model_ms
        headline = Headline("speed-up over the reference (CPU time)", "×", summary["speedup"])
        if options.min_speedup is not None:
            headline.target, headline.target_text = options.min_speedup, \
                f"≥ {options.min_speedup:g} ×"
            headline.passed = summary["speedup"] >= options.min_speedup
        rows.append([reference_name, fmt(reference_cpu_ms), fmt(reference_ms),
                     str(len(timings["reference"][0]))])
        result.headlines.append(Headline("model CPU time per energy+forces call", "ms",
                                         model_cpu_ms))
        result.headlines.append(Headline(f"{reference_name} CPU time per energy+forces call",
                                         "ms", reference_cpu_ms))
        result.headlines.append(Headline("speed-up over the reference (wall-clock time)", "×",
                                         summary["wall_speedup"]))
    result.headlines.append(headline)
    result.tables.append(Table(
        f"Median time of one energy + forces call on {structure.get_chemical_formula()} "
        f"({len(structure)} atoms)",
        ["calculator", "CPU ms per call", "wall ms per call", "timed calls"], rows))
    t = summary["threads"]
    result.notes.append(f"Both timed in one process: torch threads {t['torch_threads']}, "
                        f"OMP_NUM_THREADS={t['OMP_NUM_THREADS']}, {t['cpu_count']} CPUs; "
                        f"{options.warmup_calls} untimed warm-up call(s) each.")
    if reference is None:
        result.notes.append("No reference calculator: only the model was timed.")
    result.figures.append(_figure(summary, reference_name, FigureSink(out_dir, NAME)))
    return result


def _figure(summary: dict[str, Any], reference_name: str, sink: FigureSink):
    names, values, colors = ["model"], [summary["model_cpu_ms_per_call"]], [MODEL_COLOR]
    if "reference_cpu_ms_per_call" in summary:
        names.append(reference_name)
        values.append(summary["reference_cpu_ms_per_call"])
        colors.append(REFERENCE_COLOR)
    figure, ax = new_figure(1, 1, width=6.0, height=2.2 + 0.3 * len(names))
    y = np.arange(len(names))
    ax.barh(y, values, color=colors, alpha=0.8)
    for k, value in enumerate(values):
        ax.text(value, k, f" {value:.3g} ms", va="center", fontsize="small")
    ax.set_yticks(y, names)
    ax.set_xscale("log")
    ax.set_xlim(min(values) / 3, max(values) * 30)
    ax.set_xlabel("CPU time per energy + forces call (ms, log scale)")
    if "speedup" in summary:
        ax.set_title(f"speed-up {summary['speedup']:.3g}× on {summary['structure']}",
                     fontsize="medium")
    return sink.save(figure, "timings", "Median CPU time (this process and its child "
                     "processes) of one energy + forces call of the model and of the reference "
                     "on the same structure (log scale).",
                     {"names": names, "cpu_ms_per_call": values,
                      "speedup": summary.get("speedup")})
