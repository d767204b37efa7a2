"""docs/architecture.md lists every module of the two packages, each once, and
names no module that does not exist; the tokens core imports no web framework or Redis."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "architecture.md"
MODULE_ROW = re.compile(r"^\| `((?:tokens|orchestrator)/[\w/]+\.py)` \|", re.MULTILINE)
CORE = [*sorted((ROOT / "tokens").glob("*.py")), *sorted((ROOT / "tokens/profiles").glob("*.py"))]


def listed() -> list[str]:
    return MODULE_ROW.findall(PAGE.read_text())


def modules() -> set[str]:
    found = {
        path.relative_to(ROOT).as_posix()
        for package in ("tokens", "orchestrator")
        for path in (ROOT / package).rglob("*.py")
    }
    # A subpackage's bare __init__ (a docstring) is named by its heading, not a row.
    return {m for m in found if not m.endswith("__init__.py") or _has_code(ROOT / m)}


def _has_code(path: Path) -> bool:
    return any(not isinstance(node, ast.Expr) for node in ast.parse(path.read_text()).body)


def test_every_module_has_one_row_and_every_row_a_module() -> None:
    """A module added, moved or removed without its line in the page fails here."""
    rows = listed()
    assert len(rows) == len(set(rows)), "a module is listed twice"
    assert set(rows) == modules()


def test_the_tokens_core_imports_neither_starlette_nor_redis() -> None:
    """tokens/ and tokens/profiles/ stay pure: the web layer is tokens/web/."""
    for path in CORE:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                top = name.split(".")[0]
                assert top not in ("starlette", "redis", "orchestrator"), f"{path.name}: {name}"
                assert not name.startswith("tokens.web"), f"{path.name}: {name}"


def _module_files() -> dict[str, Path]:
    """Every module of orchestrator/ by its dotted name (a package by its own name)."""
    found = {}
    for path in (ROOT / "orchestrator").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The orchestrator modules ``name`` imports anywhere: at the top, under
    TYPE_CHECKING or inside a function (``from P import m`` names module ``P.m``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in known:
                    out.add(full)
                elif base in known:
                    out.add(base)
    return out - {name}


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a path that comes back to its start), if any."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_orchestrator_imports_flow_one_way() -> None:
    """No import circle among orchestrator/'s modules, TYPE_CHECKING and lazy imports
    included: a lower module that needs a higher one's object names a Protocol."""
    known = _module_files()
    graph = {name: _imported(name, path, known) for name, path in known.items()}
    circle = _circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_circle_finder_finds_a_circle() -> None:
    """The check above can fail: a made-up graph with a circle of three is caught."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert _circle(graph) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": set()}) is None
