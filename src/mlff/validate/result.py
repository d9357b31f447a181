"""What a validation check returns: headline figures, tables, figures and notes.

Every check of :mod:`mlff.validate.checks` returns one :class:`CheckResult`; the report
(:mod:`mlff.validate.report`) renders it as a Markdown section and a JSON record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Number = float | int


@dataclass
class Headline:
    """One figure of merit: the model's value beside the reference's, and a verdict.

    Attributes:
        quantity: what is measured, e.g. ``"lattice constant"``.
        unit: unit of ``model`` and ``reference`` (``""`` when dimensionless).
        model: the model's value.
        reference: the reference calculator's value, or ``None`` without a reference.
        deviation: ``model - reference`` (in ``deviation_unit``), or a deviation the check
            defines (e.g. the largest relative deviation over phonon branches).
        deviation_unit: ``"%"`` for relative deviations, else the unit.
        target: the largest accepted ``|deviation|`` (or value, see ``target_text``).
        target_text: how the target reads in the report, e.g. ``"|Δ| ≤ 0.5 %"``.
        passed: whether the target is met; ``None`` when there is no target.
    """

    quantity: str
    unit: str
    model: Number | None
    reference: Number | None = None
    deviation: Number | None = None
    deviation_unit: str = ""
    target: Number | None = None
    target_text: str = ""
    passed: bool | None = None


def compare(
    quantity: str,
    unit: str,
    model: Number,
    reference: Number | None,
    *,
    relative_tolerance: float | None = None,
    absolute_tolerance: float | None = None,
) -> Headline:
    """A :class:`Headline` comparing ``model`` with ``reference``.

    Args:
        quantity: what is measured.
        unit: unit of both values.
        model: the model's value.
        reference: the reference's value; ``None`` gives a headline without a verdict.
        relative_tolerance: accepted ``|model - reference| / |reference|`` (a fraction:
            0.005 is 0.5 %); the deviation is then shown in %.
        absolute_tolerance: accepted ``|model - reference|`` in ``unit``.

    Returns:
        The headline, with ``passed`` set when a tolerance and a reference are given.
    """
    if reference is None or not _finite(model) or not _finite(reference):
        return Headline(quantity, unit, model, reference)
    if relative_tolerance is not None:
        deviation = 100.0 * (model - reference) / abs(reference) if reference else math.inf
        return Headline(quantity, unit, model, reference, deviation, "%",
                        100.0 * relative_tolerance, f"|Δ| ≤ {100.0 * relative_tolerance:g} %",
                        abs(deviation) <= 100.0 * relative_tolerance)
    deviation = model - reference
    if absolute_tolerance is not None:
        return Headline(quantity, unit, model, reference, deviation, unit, absolute_tolerance,
                        f"|Δ| ≤ {absolute_tolerance:g} {unit}".strip(),
                        abs(deviation) <= absolute_tolerance)
    return Headline(quantity, unit, model, reference, deviation, unit)


def bound(quantity: str, unit: str, value: Number, limit: float, *, below: bool = True,
          absolute: bool = True) -> Headline:
    """A :class:`Headline` checking one value against a limit (no reference).

    Args:
        quantity: what is measured.
        unit: unit of ``value`` and ``limit``.
        value: the model's value.
        limit: the bound.
        below: the value must be at most ``limit`` (else at least).
        absolute: compare ``|value|`` (with ``below``).
    """
    shown = abs(value) if absolute else value
    if below:
        text = f"{'|x|' if absolute else 'x'} ≤ {limit:g} {unit}".strip()
        passed = bool(_finite(value) and shown <= limit)
    else:
        text = f"x ≥ {limit:g} {unit}".strip()
        passed = bool(_finite(value) and value >= limit)
    return Headline(quantity, unit, value, None, None, "", limit, text, passed)


@dataclass
class Table:
    """A Markdown table: a caption, a header row and rows of already formatted cells."""

    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class FigureRecord:
    """A figure written by a check: its PNG, the JSON of its data, and a caption."""

    png: Path
    data: Path
    caption: str


@dataclass
class CheckResult:
    """Everything one check found.

    Attributes:
        name: the check's name (``"errors"``, ``"crystal"``, ...).
        title: the heading of its report section.
        summary: every number the check computed, as JSON data (units in the key names).
        headlines: the figures of merit shown in the report's summary table.
        tables: tables of the section, in order.
        figures: figures of the section, in order.
        notes: sentences shown under the section (what was skipped and why, settings).
        status: ``"ok"``, or ``"failed"`` when the check raised (see ``error``).
        error: the error message of a failed check.
        seconds: wall-clock time of the check, s.
    """

    name: str
    title: str
    summary: dict[str, Any] = field(default_factory=dict)
    headlines: list[Headline] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[FigureRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    status: str = "ok"
    error: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool | None:
        """False if any headline failed, True if all with a target passed, else None."""
        verdicts = [h.passed for h in self.headlines if h.passed is not None]
        if self.status != "ok":
            return False
        return all(verdicts) if verdicts else None


def fmt(value: Any, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (``—`` for None, ``nan`` kept)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ", ".join(fmt(v, digits) for v in value)
    return str(value)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
