"""The validation report: ``report.md`` (Markdown with PNG figures beside it) and
``report.json`` (every number, table and figure path of every check).

Layout of the output folder::

    report.md            the report a person reads
    report.json          the same content as data
    figures/<check>-<name>.png   each figure
    figures/<check>-<name>.json  the data plotted in it
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlff.validate.figures import to_json
from mlff.validate.result import CheckResult, Headline, Table, fmt

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
FIGURES = "figures"
VERDICT = {True: "✅ pass", False: "❌ fail", None: ""}


def environment() -> dict[str, str]:
    """Versions and machine, for the report's header."""
    import ase
    import torch

    from mlff._version import __version__

    return {"mlff": __version__, "torch": torch.__version__, "ase": ase.__version__,
            "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs"}


def write_report(
    out_dir: str | Path,
    results: Sequence[CheckResult],
    model: str,
    reference: str | None = None,
    settings: dict[str, Any] | None = None,
    not_run: dict[str, str] | None = None,
    input_notes: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.json`` into ``out_dir``.

    Args:
        out_dir: the output folder (figures already written under ``figures/``).
        results: the checks' results, in report order.
        model: a description of the model (file, architecture, elements).
        reference: a description of the reference calculator, if any.
        settings: the resolved settings of the run (shown in the JSON).
        not_run: check name -> why it did not run.
        input_notes: where inputs came from when they were not given (shown as a list).

    Returns:
        The paths of the Markdown and JSON files.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    env = environment()
    not_run = not_run or {}
    markdown = render_markdown(out_dir, results, model, reference, created, env, not_run,
                               input_notes)
    md_path, json_path = out_dir / REPORT_MD, out_dir / REPORT_JSON
    md_path.write_text(markdown, encoding="utf-8")
    record = {
        "created": created, "environment": env, "model": model, "reference": reference,
        "settings": settings or {}, "not_run": not_run, "input_notes": list(input_notes),
        "checks": {r.name: _check_record(r, out_dir) for r in results},
        "verdict": overall_verdict(results),
    }
    json_path.write_text(json.dumps(to_json(record), indent=1) + "\n", encoding="utf-8")
    return md_path, json_path


def overall_verdict(results: Sequence[CheckResult]) -> dict[str, int]:
    """Counts of targets met and missed, and of failed checks."""
    verdicts = [h.passed for r in results for h in r.headlines if h.passed is not None]
    return {"targets_met": sum(verdicts), "targets_missed": len(verdicts) - sum(verdicts),
            "checks_failed": sum(r.status != "ok" for r in results)}


def _check_record(result: CheckResult, out_dir: Path) -> dict[str, Any]:
    return {
        "title": result.title, "status": result.status, "error": result.error,
        "seconds": result.seconds, "passed": result.passed, "summary": result.summary,
        "headlines": [dataclasses.asdict(h) for h in result.headlines],
        "tables": [dataclasses.asdict(t) for t in result.tables],
        "figures": [{"png": _relative(f.png, out_dir), "data": _relative(f.data, out_dir),
                     "caption": f.caption} for f in result.figures],
        "notes": result.notes,
    }


def _relative(path: Path, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def render_markdown(out_dir: Path, results: Sequence[CheckResult], model: str,
                    reference: str | None, created: str, env: dict[str, str],
                    not_run: dict[str, str], input_notes: Sequence[str] = ()) -> str:
    """The whole report as Markdown (figure links relative to ``out_dir``)."""
    lines = ["# Validation report", ""]
    header = [["model", model], ["reference", reference or "none (model-only checks)"],
              ["created", created],
              ["software", f"mlff {env['mlff']}, torch {env['torch']}, ASE {env['ase']}, "
                           f"Python {env['python']}"],
              ["machine", env["machine"]],
              ["checks", ", ".join(f"{r.name} ({r.seconds:.0f} s)" for r in results) or "none"]]
    lines += _markdown_table(Table("", ["", ""], header))
    if input_notes:
        lines += ["", "Inputs chosen by default:", ""] + [f"- {note}" for note in input_notes]
    lines += ["", "## Summary", ""]
    verdict = overall_verdict(results)
    total = verdict["targets_met"] + verdict["targets_missed"]
    summary = f"**{verdict['targets_met']} of {total} targets met**"
    if verdict["checks_failed"]:
        summary += f"; **{verdict['checks_failed']} check(s) failed to run** (see below)"
    lines += [summary + ".", ""]
    rows = [_headline_row(r.name, h) for r in results for h in r.headlines]
    rows += [[r.name, "check failed", "—", "—", "—", "—", VERDICT[False]]
             for r in results if r.status != "ok"]
    if rows:
        lines += _markdown_table(Table("", ["check", "quantity", "model", "reference", "Δ",
                                            "target", "verdict"], rows))
    if not_run:
        lines += ["", "Not run: " + "; ".join(f"**{k}** ({v})" for k, v in not_run.items()) + "."]
    for number, result in enumerate(results, start=1):
        lines += ["", f"## {number}. {result.title}", ""]
        if result.status != "ok":
            lines += [f"**This check failed:** {result.error}", ""]
        for note in result.notes:
            lines += [note, ""]
        for table in result.tables:
            lines += _markdown_table(table) + [""]
        for figure in result.figures:
            png, data = _relative(figure.png, out_dir), _relative(figure.data, out_dir)
            lines += [f"![{Path(png).stem}]({png})", "",
                      f"*{figure.caption}* Data: [{Path(data).name}]({data}).", ""]
    return "\n".join(lines).rstrip() + "\n"


def _headline_row(check: str, h: Headline) -> list[str]:
    deviation = "—"
    if h.deviation is not None:
        sign = "+" if h.deviation > 0 and not h.deviation_unit.startswith("×") else ""
        deviation = f"{sign}{fmt(h.deviation, 3)} {h.deviation_unit}".strip()
    unit = f" {h.unit}" if h.unit else ""
    reference = f"{fmt(h.reference)}{unit}" if h.reference is not None else "—"
    return [check, h.quantity, f"{fmt(h.model)}{unit}", reference, deviation,
            h.target_text or "—", VERDICT[h.passed]]


def _markdown_table(table: Table) -> list[str]:
    lines = [f"**{table.caption}**", ""] if table.caption else []
    escape = lambda cell: str(cell).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines.append("| " + " | ".join(escape(c) for c in table.header) + " |")
    lines.append("| " + " | ".join("---" for _ in table.header) + " |")
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in table.rows]
    return lines
