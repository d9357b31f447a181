"""Headline verdicts, figure files and the Markdown/JSON report."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from mlff.validate.figures import FigureSink, new_figure
from mlff.validate.report import write_report
from mlff.validate.result import CheckResult, Table, bound, compare

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_compare_relative_and_absolute():
    h = compare("a", "Å", 3.61, 3.60, relative_tolerance=0.005)
    assert h.deviation == pytest.approx(100 * 0.01 / 3.60) and h.deviation_unit == "%"
    assert h.passed and h.target_text == "|Δ| ≤ 0.5 %"
    assert compare("a", "Å", 3.7, 3.6, relative_tolerance=0.005).passed is False
    h = compare("E_vac", "eV", 1.30, 1.22, absolute_tolerance=0.05)
    assert h.deviation == pytest.approx(0.08) and h.passed is False
    assert compare("x", "eV", 1.0, None, absolute_tolerance=0.1).passed is None
    assert compare("x", "eV", math.nan, 1.0, absolute_tolerance=0.1).passed is None
    assert bound("drift", "meV/atom/ps", -0.4, 1.0).passed
    assert bound("drift", "meV/atom/ps", math.nan, 1.0).passed is False
    assert bound("speed", "x", 50.0, 1000.0, below=False).passed is False


def test_report_renders_sections_figures_and_json(tmp_path):
    sink = FigureSink(tmp_path / "figures", "demo")
    figure, ax = new_figure()
    ax.plot([0, 1], [0, 1])
    record = sink.save(figure, "line", "A straight line.", {"x": np.array([0.0, 1.0]),
                                                             "bad": math.nan})
    good = CheckResult("demo", "A demonstration", summary={"value": 1.5},
                       headlines=[compare("a", "Å", 3.6, 3.6, relative_tolerance=0.01),
                                  compare("B", "GPa", 150.0, 134.0, relative_tolerance=0.05)],
                       tables=[Table("numbers", ["x", "y|z"], [["1", "2|3"]])],
                       figures=[record], notes=["A note."], seconds=1.2)
    failed = CheckResult("broken", "A broken check", status="failed", error="ValueError: boom")
    md_path, json_path = write_report(tmp_path, [good, failed], model="m.mlff",
                                      reference="emt", not_run={"cost": "no reference"},
                                      input_notes=["crystal: ASE's Cu"])
    text = md_path.read_text()
    assert "Inputs chosen by default:\n\n- crystal: ASE's Cu" in text
    assert "# Validation report" in text and "## 1. A demonstration" in text
    assert "**1 of 2 targets met**; **1 check(s) failed to run**" in text
    assert "✅ pass" in text and "❌ fail" in text and "This check failed:** ValueError: boom" in text
    assert "Not run: **cost** (no reference)" in text
    assert "| 1 | 2\\|3 |" in text  # a pipe inside a cell does not break the table
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (tmp_path / link).read_bytes()[:8] == PNG_MAGIC
    record = json.loads(json_path.read_text())
    assert record["verdict"] == {"targets_met": 1, "targets_missed": 1, "checks_failed": 1}
    assert record["checks"]["demo"]["figures"][0]["png"] == "figures/demo-line.png"
    assert record["checks"]["broken"]["status"] == "failed"
    data = json.loads((tmp_path / "figures" / "demo-line.json").read_text())
    assert data["data"] == {"x": [0.0, 1.0], "bad": None} and data["caption"] == "A straight line."
