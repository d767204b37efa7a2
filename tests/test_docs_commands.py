"""Every command the README and docs/*.md ask a reader to run works as written
after the quick start, which installs into ``.venv`` without activating it: so
the project's programs are run as ``.venv/bin/<program>``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Installed into .venv by the quick start (python too: the system one lacks the deps).
PROGRAMS = frozenset({"orchestrator", "uvicorn", "python", "python3", "pytest", "ruff", "mypy",
                      "pip", "pip3"})  # fmt: skip
# An inline code span is a command (not a command's name) with an environment
# assignment in front, or when it runs one of these with arguments.
INLINE_COMMANDS = frozenset({"python", "python3", "uvicorn", "pytest"})
SHELL_BLOCKS = frozenset({"sh", "bash", "shell", "console"})

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_SPAN = re.compile(r"`([^`\n]+)`")
_SEPARATORS = re.compile(r"&&|\|\||[;|&()`]|\$\(")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def _strip_comment(line: str) -> str:
    return re.sub(r"(^|\s)#.*", "", line)


def _simple_commands(line: str) -> list[list[str]]:
    """The words of each simple command of a shell line (pipes, lists, substitutions)."""
    commands = []
    for part in _SEPARATORS.split(line):
        words = part.split()
        assigned = False
        while words and (_ASSIGNMENT.match(words[0]) or words[0] in ("export", "exec")):
            assigned = assigned or "=" in words[0]
            words.pop(0)
        if words:
            commands.append(["=" if assigned else "", *words])
    return commands


def _wrong(words: list[str]) -> bool:
    program = words[1]
    name = program.rsplit("/", 1)[-1]
    if name not in PROGRAMS or program.startswith(".venv/bin/"):
        return False
    return words[1:4] != ["python3", "-m", "venv"]  # making the venv itself


def shell_lines(text: str) -> list[str]:
    """The command lines of the page's shell blocks (continuations joined) and
    the ``$ ``-prompted lines of its other blocks."""
    lines: list[str] = []
    for fence in _FENCE.finditer(text):
        body = fence.group(2).replace("\\\n", " ")
        for raw in body.splitlines():
            if raw.startswith("$ "):
                lines.append(raw[2:])
            elif fence.group(1) in SHELL_BLOCKS and fence.group(1) != "console":
                lines.append(_strip_comment(raw))
    return lines


def inline_commands(text: str) -> list[str]:
    prose = _FENCE.sub("", _COMMENT.sub("", text))
    spans = []
    for span in _SPAN.findall(prose):
        for words in _simple_commands(span):
            runs = words[1].rsplit("/", 1)[-1] in INLINE_COMMANDS and len(words) > 2
            if words[0] == "=" or runs:
                spans.append(span)
    return spans


def offending(text: str) -> list[str]:
    found = []
    for line in [*shell_lines(text), *inline_commands(text)]:
        if any(_wrong(words) for words in _simple_commands(line)):
            found.append(line.strip())
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_commands_use_the_quick_starts_venv(page: Path) -> None:
    assert offending(page.read_text(encoding="utf-8")) == []


def test_the_check_finds_the_forms_a_newcomer_tripped_on() -> None:
    page = """
Run it with `CONVERSATION_HANDLER=my_bot:handle python -m orchestrator serve`.
Names are fine: `orchestrator simulate` plays the host; `.venv/bin/python -m orchestrator`.

```sh
python3 -m venv .venv && .venv/bin/pip install -q -e .
uvicorn backend:app --port 9000  # the receiver
WEBHOOK_URL=https://backend.example.com/turn \\
WEBHOOK_SECRET=$(orchestrator keygen) \\
  CONVERSATION_HANDLER=webhook .venv/bin/orchestrator serve
.venv/bin/orchestrator serve & curl -s localhost:8080/api/jwt | python3 -m json.tool
```

```
web: orchestrator serve
$ orchestrator simulate --script demo.txt
DP: hello
```
"""
    assert offending(page) == [
        "uvicorn backend:app --port 9000",
        "WEBHOOK_URL=https://backend.example.com/turn  WEBHOOK_SECRET=$(orchestrator keygen)    "
        "CONVERSATION_HANDLER=webhook .venv/bin/orchestrator serve",
        ".venv/bin/orchestrator serve & curl -s localhost:8080/api/jwt | python3 -m json.tool",
        "orchestrator simulate --script demo.txt",
        "CONVERSATION_HANDLER=my_bot:handle python -m orchestrator serve",
    ]
