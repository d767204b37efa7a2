"""What ``orchestrator replay`` writes: the terminal report, ``--json``, ``--junit``
and ``--save-scenarios`` (production's answers as scenario files).

Nothing here holds a token or a key: sessions are read from the archive, which
never keeps them (``archive.record``), and claims and variables pass the same
credential-name filter again before they are written.
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from orchestrator.testing.replay import Recorded, SessionReplay, TurnDiff, without_credentials
from orchestrator.testing.suite import describe

MAX_FILE_STEM = 100


# --- the terminal -------------------------------------------------------------------------


def report(outcome: SessionReplay, out: TextIO) -> None:
    """``SAME id`` or ``DIFF id: kinds``, the differing turns, the marks."""
    verdict = "DIFF" if outcome.differs else "SAME"
    kinds = f": {', '.join(outcome.kinds)}" if outcome.differs else ""
    print(f"{verdict} {outcome.id} ({_turns(outcome)}){kinds}", file=out)
    for line in detail_lines(outcome):
        print(line, file=out)


def _turns(outcome: SessionReplay) -> str:
    users = sum(1 for turn in outcome.turns if turn.user is not None)
    return f"{users} turn{'' if users == 1 else 's'}"


def detail_lines(outcome: SessionReplay) -> list[str]:
    lines = [f"  marked: {mark}" for mark in outcome.marks]
    for turn in outcome.turns:
        if turn.differs:
            lines.extend(_turn_lines(turn))
    if outcome.variables:
        lines.append("  variables at the end differ:")
        for name, (want, got) in outcome.variables.items():
            lines.append(f"    {name}: expected {_json(want)}, got {_json(got)}")
    if outcome.error is not None:
        lines.append(f"  stopped: {outcome.error}")
    return lines


def _turn_lines(turn: TurnDiff) -> list[str]:
    lines = [f"  {turn.label}: {', '.join(turn.kinds)}"]
    if turn.expected is not None:
        expected = turn.expected
        lines.append(
            f"    expected: text {expected.text!r}, cards {_json(expected.cards)}, "
            f"fallback {_json(expected.fallback)}"
        )
    if turn.got is not None:
        lines.append(f"    got:      {describe(turn.got)}")
    if turn.judge is not None:
        lines.append(f"    judge:    {turn.judge}")
    return lines


def summary(outcomes: Sequence[SessionReplay], seconds: float) -> str:
    differ = [o for o in outcomes if o.differs]
    marked = sum(1 for o in outcomes if o.marks)
    turns = sum(len(o.turns) for o in outcomes)
    changed = sum(1 for o in outcomes for turn in o.turns if turn.differs)
    noun = "session" if len(outcomes) == 1 else "sessions"
    return (
        f"{len(outcomes)} {noun} replayed: {len(outcomes) - len(differ)} same, "
        f"{len(differ)} differ ({changed} of {turns} turns; {marked} marked), {seconds:.1f} s"
    )


class Progress:
    """``[#####     ] 12/200`` on stderr, redrawn in place; only on a terminal."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.total = total
        self.shown = total > 0 and self.stream.isatty()

    def update(self, done: int) -> None:
        if not self.shown:
            return
        filled = self.WIDTH * done // self.total
        bar = "#" * filled + " " * (self.WIDTH - filled)
        self.stream.write(f"\rreplay [{bar}] {done}/{self.total}")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * (self.WIDTH + 40) + "\r")
            self.stream.flush()


# --- --json -------------------------------------------------------------------------------


def to_dict(outcome: SessionReplay) -> dict[str, Any]:
    return {
        "id": outcome.id,
        "ended_at": outcome.ended_at,
        "end_reason": outcome.end_reason,
        "differs": outcome.differs,
        "kinds": outcome.kinds,
        "marks": outcome.marks,
        "error": outcome.error,
        "variables": outcome.variables,
        "seconds": round(outcome.seconds, 4),
        "turns": [
            {
                "turn": turn.index,
                "user": turn.user,
                "kinds": turn.kinds,
                "differs": turn.differs,
                "expected": None if turn.expected is None else turn.expected.to_dict(),
                "got": None if turn.got is None else turn.got.to_dict(),
                "judge": turn.judge,
            }
            for turn in outcome.turns
        ],
    }


def write_json(path: str | Path, outcomes: Sequence[SessionReplay], seconds: float) -> None:
    document = {
        "summary": {
            "sessions": len(outcomes),
            "differ": sum(o.differs for o in outcomes),
            "marked": sum(bool(o.marks) for o in outcomes),
            "errors": sum(o.error is not None for o in outcomes),
            "seconds": round(seconds, 3),
        },
        "sessions": [to_dict(outcome) for outcome in outcomes],
    }
    Path(path).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


# --- --junit ------------------------------------------------------------------------------


def write_junit(path: str | Path, outcomes: Sequence[SessionReplay]) -> None:
    """One ``testsuite``, one ``testcase`` per session: a ``failure`` when it differs,
    an ``error`` when the replay stopped."""
    failures = sum(o.differs and o.error is None for o in outcomes)
    errors = sum(o.error is not None for o in outcomes)
    root = ET.Element("testsuites", name="orchestrator replay")
    suite = ET.SubElement(root, "testsuite", name="orchestrator replay")
    for outcome in outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            classname="replay",
            name=outcome.id,
            time=f"{outcome.seconds:.3f}",
        )
        if outcome.differs:
            tag = "error" if outcome.error is not None else "failure"
            message = outcome.error or "differs: " + ", ".join(outcome.kinds)
            element = ET.SubElement(case, tag, message=message)
            element.text = "\n".join(detail_lines(outcome))
        elif outcome.marks:
            marks = "\n".join(f"marked: {mark}" for mark in outcome.marks)
            ET.SubElement(case, "system-out").text = marks
    for element in (root, suite):
        element.set("tests", str(len(outcomes)))
        element.set("failures", str(failures))
        element.set("errors", str(errors))
    suite.set("time", f"{sum(o.seconds for o in outcomes):.3f}")
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


# --- --save-scenarios ---------------------------------------------------------------------


def scenario_document(source: Recorded) -> dict[str, Any]:
    """A scenario ``orchestrator test`` runs: the archived claims, the user's lines, and
    production's answers as the expectations (``says`` exact, ``cards``, ``fallback``)."""
    record = source.record
    document: dict[str, Any] = {"name": f"archived session {record.id}"}
    claims = without_credentials(record.claims)
    if claims:
        document["claims"] = claims
    turns: list[dict[str, Any]] = []
    if source.welcome is not None:
        turns.append({"welcome": _expect(source.welcome.text, source.welcome)})
    for user, answer in zip(source.user_turns, source.answers, strict=True):
        turn: dict[str, Any] = {"user": user}
        if answer is not None:
            turn["expect"] = _expect(answer.text, answer)
        turns.append(turn)
    document["turns"] = turns
    return document


def _expect(text: str, answer: Any) -> dict[str, Any]:
    return {"says": text, "cards": list(answer.cards), "fallback": answer.fallback}


def save_scenarios(directory: str | Path, sources: Sequence[Recorded]) -> list[Path]:
    """One YAML file per session (named after its id), its marks as comments on top."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()
    for source in sources:
        if not source.user_turns and source.welcome is None:
            continue  # nothing to check
        stem = _stem(source.record.id, used)
        path = folder / f"{stem}.yaml"
        comments = [
            f"# Replayed from the archive: session {_one_line(source.record.id)}, ended "
            f"{source.record.end_reason}; production's answers are the expectations.",
            "# It starts with no variables (the archive keeps only the end's).",
            *(f"# marked: {_one_line(mark)}" for mark in source.marks),
        ]
        body = yaml.safe_dump(
            scenario_document(source), allow_unicode=True, sort_keys=False, width=100
        )
        path.write_text("\n".join(comments) + "\n" + body)
        written.append(path)
    return written


def _stem(session_id: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", session_id).strip(".")[:MAX_FILE_STEM] or "session"
    candidate, number = stem, 2
    while candidate.lower() in used:
        candidate, number = f"{stem}-{number}", number + 1
    used.add(candidate.lower())
    return candidate


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 300 else text[:299] + "…"
