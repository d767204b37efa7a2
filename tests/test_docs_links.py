"""The Markdown docs point at things that exist: every relative link's file and
anchor, every repository path and every Python name they mention in code spans."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "SECURITY.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
REPO_PATH = re.compile(r"`((?:orchestrator|tokens|tests|bench|docs|\.ci)/[^`\s]*)`")
PYTHON_NAME = re.compile(r"`((?:orchestrator|tokens)(?:\.\w+)+(?::\w+)?)`")
FENCE = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)

# Links inside README's "## Configuration" section, which the configuration
# generator replaces with docs/configuration.md; they pointed at README sections
# that now live under docs/. The test below fails once the section is replaced,
# so this list goes with it.
PENDING_CONFIGURATION_LINKS = {
    "#deploying-behind-a-proxy",
    "#key-rotation",
    "#cors",
    "#conversation-handlers",
    "#memory-per-session-and-per-client-address",
    "#several-instances-redis",
    "#developer-console",
}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", page.read_text()), re.MULTILINE):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def local_links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def link_resolves(page: Path, link: str) -> bool:
    path, _, anchor = link.partition("#")
    target = (page.parent / path).resolve() if path else page
    if not target.exists():
        return False
    return not anchor or target.suffix != ".md" or anchor in anchors(target)


def test_the_pages_have_links_to_check() -> None:
    """The README links to docs pages, so the check below is not vacuous."""
    assert any(link.startswith("docs/") for link in local_links(ROOT / "README.md"))


def test_the_slug_is_githubs() -> None:
    """Backticks, slashes and parentheses vanish; spaces become hyphens."""
    assert slug("`GET /api/jwt`") == "get-apijwt"
    assert slug("Several instances (Redis)") == "several-instances-redis"


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_resolves(page: Path) -> None:
    """Each link to a local file or anchor names a file that exists and a heading in it."""
    pending = PENDING_CONFIGURATION_LINKS if page.name == "README.md" else set()
    links = [link for link in local_links(page) if link not in pending]
    broken = [link for link in links if not link_resolves(page, link)]
    assert broken == [], f"broken links in {page.name}: {broken}"


def test_the_pending_configuration_links_are_still_pending() -> None:
    """Once README's Configuration section no longer links to them, drop the exemption."""
    readme_links = set(local_links(ROOT / "README.md"))
    assert readme_links >= PENDING_CONFIGURATION_LINKS


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_repository_path_named_exists(page: Path) -> None:
    """A path like `orchestrator/server/websocket.py` in a code span names a real file."""
    missing = [path for path in REPO_PATH.findall(page.read_text()) if not (ROOT / path).exists()]
    assert missing == [], f"paths in {page.name} that do not exist: {missing}"


def resolves(name: str) -> bool:
    """``package.module:attribute`` or ``package.module.Attribute`` imports."""
    module_name, _, attribute = name.partition(":")
    parts = module_name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in [*parts[cut:], *([attribute] if attribute else [])]:
            if not hasattr(target, part):
                return False
            target = getattr(target, part)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_python_name_named_imports(page: Path) -> None:
    """A name like `orchestrator.handlers.default:handle` in a code span imports."""
    unresolved = [name for name in PYTHON_NAME.findall(page.read_text()) if not resolves(name)]
    assert unresolved == [], f"names in {page.name} that do not import: {unresolved}"


def test_a_stale_python_name_is_caught() -> None:
    """The check is not vacuous: the pre-layout module path no longer resolves."""
    assert resolves("orchestrator.handlers.default:handle")
    assert not resolves("orchestrator.default_handler:handle")
    assert not resolves("tokens.ccai.CcaiUser")
