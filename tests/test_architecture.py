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
