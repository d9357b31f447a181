"""docs/design.md matches the code: the graph-dict keys and the import layering."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from mlff.data import keys as K

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "mlff"
DESIGN = ROOT / "docs" / "design.md"
_ROOT_MODULES = {"__init__", "__main__"}  # the public API and `python -m mlff`


def _table(heading: str) -> list[list[str]]:
    """The rows (cells, backticks kept) of the first Markdown table after ``heading``."""
    text = DESIGN.read_text().split(heading, 1)[1]
    rows = [line for line in text.splitlines() if line.startswith("|")]
    lines = []
    for line in text.splitlines()[text.splitlines().index(rows[0]):]:
        if not line.startswith("|"):
            break
        lines.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return lines[2:]  # header and separator


def _names(cell: str) -> set[str]:
    return set(re.findall(r"`([^`]+)`", cell))


def layer_table() -> dict[str, set[str]]:
    """Package -> the packages it may import, from docs/design.md."""
    return {next(iter(_names(row[0]))): _names(row[2])
            for row in _table("## Packages and what each may import")}


def imports_of(path: Path) -> set[str]:
    """The mlff packages a module imports (any depth of the module, function level too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "mlff":
                names += [f"mlff.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name.split(".")[1] for name in names
                  if name.startswith("mlff.") and name.count(".") >= 1}
    return found


def violations(source: Path, table: dict[str, set[str]]) -> list[str]:
    """``file: imports X`` for every import the table does not allow."""
    found = []
    for path in sorted(source.rglob("*.py")):
        package = path.relative_to(source).parts[0].removesuffix(".py")
        if package in _ROOT_MODULES:
            continue
        if package not in table:
            found.append(f"{path.relative_to(source)}: package {package} is not in the table")
            continue
        for imported in sorted(imports_of(path) - table[package] - {package}):
            found.append(f"{path.relative_to(source)}: imports mlff.{imported}")
    return found


def test_every_import_follows_the_layer_table():
    assert violations(SOURCE, layer_table()) == []


def test_every_package_has_a_row():
    packages = {p.name.removesuffix(".py") for p in SOURCE.iterdir()
                if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    assert packages - _ROOT_MODULES == set(layer_table())


def test_a_wrong_import_is_caught(tmp_path):
    (tmp_path / "nn").mkdir()
    (tmp_path / "nn" / "bad.py").write_text("def f():\n    from mlff.train import trainer\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ok.py").write_text("from mlff.errors import DataError\nimport mlff.data.keys\n")
    assert violations(tmp_path, layer_table()) == ["nn/bad.py: imports mlff.train"]


def test_the_graph_keys_table_is_keys_py():
    documented = {next(iter(_names(row[0]))) for row in _table("## The one data structure")}
    defined = {value for name, value in vars(K).items()
               if name.isupper() and isinstance(value, str)}
    assert documented == defined
