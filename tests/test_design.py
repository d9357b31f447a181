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


def _module_name(path: Path, source: Path) -> str:
    parts = path.relative_to(source).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(source: Path) -> dict[str, set[str]]:
    """Module -> the modules of the tree at ``source`` it imports at run time (function
    level too; ``if TYPE_CHECKING:`` blocks are not run). ``from package import module``
    counts as importing the module."""
    modules = {_module_name(p, source): p for p in source.rglob("*.py")}
    root = source.name

    def known(name: str) -> str | None:
        name = name.removeprefix(f"{root}.") if name != root else ""
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = []
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                children = [f"{node.module}.{alias.name}" for alias in node.names]
                names = [c for c in children if known(c) == c.removeprefix(f"{root}.")]
                if len(names) < len(children):
                    names.append(node.module)
            else:
                continue
            found |= {m for n in names if n.startswith(f"{root}.") and (m := known(n))}
        graph[module] = found - {module}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or through others."""
    reach = {m: set(deps) for m, deps in graph.items()}
    changed = True
    while changed:  # transitive closure: the trees are small
        changed = False
        for deps in reach.values():
            more = set().union(*(reach[d] for d in deps)) - deps
            if more:
                deps |= more
                changed = True
    circles = {frozenset({m} | {d for d in reach[m] if m in reach[d]})
               for m in graph if m in reach[m]}
    return sorted(sorted(c) for c in circles)


def test_no_module_imports_itself_through_others():
    assert import_circles(module_imports(SOURCE)) == []


def test_an_import_circle_is_caught(tmp_path):
    package = tmp_path / "mlff"
    (package / "data").mkdir(parents=True)
    (package / "data" / "__init__.py").write_text("")
    (package / "data" / "a.py").write_text("from mlff.data import b\n")
    (package / "data" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mlff.data import c\n"
        "def f():\n    from mlff.data.a import g\n")
    (package / "data" / "c.py").write_text("import mlff.data.b\n")
    assert import_circles(module_imports(package)) == [["data.a", "data.b"]]
