"""The layout has no back edges: no import cycle between modules, and no two packages that
import each other. Read with ``ast`` over the tree, imports inside functions included.

Command-line entry points stand on top of everything and are left out (``__main__`` modules,
``export/cli.py``); so are the tests and benchmarks, which may import anything."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGES = ("models", "dashboard", "export")
ENTRY_POINTS = {"export.cli", "export.__main__"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = module_name(path)
            if name not in ENTRY_POINTS and not name.endswith(".__main__"):
                out[name] = path
    return out


def package_of(module: str, known: dict[str, Path]) -> str:
    """The package a module belongs to: itself for a package's __init__, else its parent."""
    if known[module].name == "__init__.py":
        return module
    return module.rpartition(".")[0]


def imports(path: Path, module: str, known: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_pkg else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            # the longest known module the name starts with (a module, or a name in one)
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(p, m, known) for m, p in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def package_edges() -> dict[str, set[str]]:
    """Package -> the other packages its modules import (a subpackage is a package)."""
    known = modules()
    out: dict[str, set[str]] = {}
    for m, deps in graph().items():
        src = package_of(m, known)
        out.setdefault(src, set()).update(package_of(d, known) for d in deps)
        out[src].discard(src)
    return out


def test_the_import_reader_sees_function_level_and_relative_imports(tmp_path):
    known = {"a.b": tmp_path / "b.py", "a.c": tmp_path / "c.py", "a": tmp_path / "__init__.py"}
    src = "def f():\n    from a.c import x\n    from . import c\nimport a.b\n"
    (tmp_path / "b.py").write_text(src)
    assert imports(tmp_path / "b.py", "a.b", known) == {"a.c", "a"}
    assert find_cycle({"x": {"y"}, "y": {"z"}, "z": {"x"}}) == ["x", "y", "z", "x"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None


def test_no_module_import_cycle():
    assert find_cycle(graph()) is None


def test_no_two_packages_import_each_other():
    edges = package_edges()
    both = sorted((a, b) for a, deps in edges.items() for b in deps if a in edges.get(b, ()))
    assert both == [], f"packages that import each other: {both}"
    assert find_cycle(edges) is None


def test_the_layers_stand_in_order():
    """models below the lessons, the lessons below the snapshot writer and the shell."""
    edges = package_edges()
    assert not edges.get("models", set()) - {"models"}, edges.get("models")
    assert "export" not in edges.get("dashboard.views", set())
    assert "dashboard" not in edges.get("dashboard.views", set())
    assert "dashboard" not in edges.get("export", set())
    assert not edges.get("dashboard.lessons", set()) & {"dashboard", "dashboard.views", "export"}
