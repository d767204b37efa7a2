"""Replaying archived sessions through a candidate handler (``orchestrator replay``).

An archived session keeps its claims (those ``ARCHIVE_CLAIMS`` kept), its
transcript (each line's role, text and fallback; a DP line said inside a
turn carries the turn's ``latency_ms``) and the shared variables it **ended**
with. It does not keep the variables it started with, nor the variables after
each turn. So a replay starts with the archived claims and **no** variables,
plays the user's lines in order after the init turn (``engine.play``), and
compares each answer's text, cards and fallback with what the DP said in
production; the variables are compared once, at the end.

What the replay cannot reproduce is marked on the session, not hidden:

- the end variables hold values the replay did not reach: the backend (or the
  UI) set them through the sessions API, or the session started with them, and
  answers after that may have depended on them (or the candidate handler no
  longer sets them);
- the DP spoke outside a turn (the sessions API's ``speak``, a command): those
  lines are not compared;
- the transcript was cut (the archive keeps the last lines): the replay starts
  at the first user line kept, without what came before;
- a user line was cut to the transcript's bound: the replay says the cut text;
- production never answered the last line (the session ended first).

With a baseline handler (``--against``), both handlers replay the same user
lines and are compared turn by turn, variables included.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.archive.record import ArchivedSession, _storable
from orchestrator.control.options import ControlOptions
from orchestrator.testing.engine import Played, play
from orchestrator.testing.results import TurnResult, said

if TYPE_CHECKING:  # the judge's module imports openai: only --judge needs it
    from orchestrator.testing.judge import Judge

IDENTICAL = "identical"
WHITESPACE_OR_CASE = "whitespace_or_case"  # the same words, other spaces or capitals
REWORDED = "reworded"  # other words, the same meaning (the judge says so)
TEXT_CHANGED = "text_changed"
CARDS_CHANGED = "cards_changed"
VARIABLES_CHANGED = "variables_changed"
FALLBACK_CHANGED = "fallback_changed"
ERROR = "error"  # the replay stopped before this turn answered
NOT_COMPARED = "not_compared"  # production has no answer to compare with
# Kinds that are not a difference: the exit status and the report count the others.
SAME = frozenset({IDENTICAL, REWORDED, NOT_COMPARED})

JUDGE_CRITERION = (
    "means the same as this earlier answer (wording may differ; the facts, the offer "
    "and the question asked must not): {answer}"
)


@dataclass(frozen=True)
class Answer:
    """What a turn answered: text (as spoken), card ids, fallback, and the variables
    after it (``None``: not known; production's are kept only at the end)."""

    text: str
    cards: list[str] = field(default_factory=list)
    fallback: bool = False
    variables: dict[str, Any] | None = None

    @classmethod
    def of(cls, result: TurnResult) -> Answer:
        return cls(result.text, list(result.cards), result.fallback, dict(result.variables))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text": self.text, "cards": self.cards, "fallback": self.fallback}
        if self.variables is not None:
            data["variables"] = self.variables
        return data


@dataclass(frozen=True)
class Recorded:
    """An archived session made ready to replay: the user's lines, production's answer
    to each (``None``: none to compare), the welcome (``None``: not compared) and
    what the replay cannot reproduce (``marks``)."""

    record: ArchivedSession
    user_turns: list[str]
    answers: list[Answer | None]
    welcome: Answer | None
    marks: list[str]


def recorded(record: ArchivedSession) -> Recorded:
    """Production's turns, read from the transcript (see the module docstring)."""
    lines = list(record.transcript)
    marks: list[str] = []
    users = [line for line in lines if line["role"] == "user"]
    timed = any(line["role"] == "dp" and "latency_ms" in line for line in lines)
    cut = (record.turns or 0) > len(users)
    if cut:
        marks.append(
            f"transcript cut: the archive kept the last {len(users)} of {record.turns} user "
            "lines; the replay starts at the first kept, without what came before"
        )
    user_turns: list[str] = []
    groups: list[list[dict[str, Any]]] = [[]]  # [0]: before the first user line
    outside = 0
    for line in lines:
        if line["role"] == "user":
            user_turns.append(line["text"])
            groups.append([])
            if line.get("original_length") is not None:
                marks.append(
                    f"user line {len(user_turns)} was cut to {len(line['text'])} of "
                    f"{line['original_length']} characters; the replay says the cut text"
                )
        elif line["role"] == "dp":
            if timed and "latency_ms" not in line:
                outside += 1  # said outside a turn: the sessions API, a command
                continue
            groups[-1].append(line)
    if outside:
        marks.append(
            f"the DP spoke {outside} line(s) outside a turn (the sessions API or a command): "
            "not compared"
        )
    answers: list[Answer | None] = [_answer(group) for group in groups[1:]]
    if users and not groups[-1] and lines and lines[-1]["role"] == "user":
        answers[-1] = None
        marks.append("production did not answer the last user line (the session ended first)")
    welcome = None if cut else _answer(groups[0])
    return Recorded(record, user_turns, answers, welcome, marks)


def _answer(lines: Iterable[Mapping[str, Any]]) -> Answer:
    texts: list[str] = []
    cards: list[str] = []
    fallback = False
    for line in lines:
        spoken = said(str(line["text"]), cards)
        if spoken:
            texts.append(spoken)
        fallback = fallback or bool(line.get("fallback"))
    return Answer(" ".join(texts), cards, fallback)


@dataclass
class TurnDiff:
    """One turn compared: 0 is the welcome, ``n`` the n-th user line."""

    index: int
    user: str | None
    kinds: list[str]
    expected: Answer | None
    got: TurnResult | None
    judge: str | None = None  # the judge's reason, when it was asked

    @property
    def differs(self) -> bool:
        return any(kind not in SAME for kind in self.kinds)

    @property
    def label(self) -> str:
        if self.user is None:
            return "welcome"
        text = " ".join(self.user.split())
        return f"turn {self.index} {(text if len(text) <= 60 else text[:59] + '…')!r}"


@dataclass
class SessionReplay:
    """One session replayed: its turns, the end variables that differ, the marks."""

    id: str
    ended_at: float
    end_reason: str
    turns: list[TurnDiff] = field(default_factory=list)
    marks: list[str] = field(default_factory=list)
    # Names whose end value differs: {name: [expected, got]} (absent: null).
    variables: dict[str, list[Any]] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    @property
    def differs(self) -> bool:
        return self.error is not None or bool(self.variables) or any(t.differs for t in self.turns)

    @property
    def kinds(self) -> list[str]:
        """Every kind of difference in the session, in order of appearance."""
        seen: list[str] = []
        extra = [VARIABLES_CHANGED] if self.variables else []
        extra += [ERROR] if self.error is not None else []
        for kind in [k for turn in self.turns for k in turn.kinds] + extra:
            if kind not in SAME and kind not in seen:
                seen.append(kind)
        return seen


def classify(expected: Answer | None, got: TurnResult | None) -> list[str]:
    """The kinds of difference between two answers (``[IDENTICAL]`` when none)."""
    if expected is None:
        return [NOT_COMPARED]
    if got is None:
        return [ERROR]
    kinds: list[str] = []
    if expected.text != got.text:
        same_words = _folded(expected.text) == _folded(got.text)
        kinds.append(WHITESPACE_OR_CASE if same_words else TEXT_CHANGED)
    if sorted(expected.cards) != sorted(got.cards):
        kinds.append(CARDS_CHANGED)
    if expected.variables is not None and expected.variables != got.variables:
        kinds.append(VARIABLES_CHANGED)
    if expected.fallback != got.fallback:
        kinds.append(FALLBACK_CHANGED)
    return kinds or [IDENTICAL]


def _folded(text: str) -> str:
    return " ".join(text.split()).casefold()


def without_credentials(variables: Mapping[str, Any]) -> dict[str, Any]:
    """``variables`` as the archive would keep them (no credential-like names)."""
    kept: dict[str, Any] = _storable(dict(variables), private=True)
    return kept


def variables_diff(expected: Mapping[str, Any], got: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{name: [expected, got]}`` for every name whose value differs (absent: ``None``)."""
    names = sorted(set(expected) | set(got))
    return {
        name: [expected.get(name), got.get(name)]
        for name in names
        if name not in expected or name not in got or expected[name] != got[name]
    }


class Replayer:
    """Replays sessions through ``candidate``, compared with production or, given a
    ``baseline`` handler, with that handler's answers; ``judge`` decides whether
    changed texts kept their meaning."""

    def __init__(
        self,
        candidate: ControlOptions,
        *,
        baseline: ControlOptions | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.candidate = candidate
        self.baseline = baseline
        self.judge = judge

    async def replay(self, record: ArchivedSession) -> SessionReplay:
        began = time.perf_counter()
        source = recorded(record)
        outcome = SessionReplay(record.id, record.ended_at, record.end_reason, marks=source.marks)
        claims = without_credentials(record.claims)  # again: an older archive may hold more
        played = await play(self.candidate, source.user_turns, claims=claims)
        welcome, answers = source.welcome, source.answers
        expected_end: dict[str, Any] | None = None
        if self.baseline is not None:
            reference = await play(self.baseline, source.user_turns, claims=claims)
            welcome, answers = _answers(reference, welcome is not None, len(source.user_turns))
            if reference.error is not None:
                outcome.marks.append(f"the baseline handler stopped early: {reference.error}")
            expected_end = without_credentials(reference.variables)
        else:
            expected_end = dict(record.variables)
        if welcome is not None:
            outcome.turns.append(await self._diff(0, None, welcome, played.welcome))
        for index, user in enumerate(source.user_turns, start=1):
            got = played.turns[index - 1] if index <= len(played.turns) else None
            outcome.turns.append(await self._diff(index, user, answers[index - 1], got))
        outcome.error = played.error
        if played.error is None:
            outcome.variables = variables_diff(expected_end, without_credentials(played.variables))
            unreached = [
                name for name, (want, got) in outcome.variables.items() if want is not None
            ]
            if unreached and self.baseline is None:
                outcome.marks.append(
                    "live state: the session ended with variables the replay did not reach "
                    f"({', '.join(unreached)}): set through the sessions API or before the "
                    "first turn (answers after that may have depended on them), or no longer "
                    "set by the handler"
                )
        outcome.seconds = time.perf_counter() - began
        return outcome

    async def _diff(
        self, index: int, user: str | None, expected: Answer | None, got: TurnResult | None
    ) -> TurnDiff:
        diff = TurnDiff(index, user, classify(expected, got), expected, got)
        text_kinds = {TEXT_CHANGED, WHITESPACE_OR_CASE}
        if self.judge is not None and expected is not None and got is not None:
            changed = [kind for kind in diff.kinds if kind in text_kinds]
            if changed:
                verdict = await self.judge.verdict(
                    criterion=JUDGE_CRITERION.format(answer=json.dumps(expected.text)),
                    user=user,
                    answer=got.text,
                )
                diff.judge = verdict.reason
                if verdict.passed:
                    diff.kinds = [REWORDED if k in text_kinds else k for k in diff.kinds]
        return diff


def _answers(
    reference: Played, welcome: bool, count: int
) -> tuple[Answer | None, list[Answer | None]]:
    """The baseline's answers (``None`` past where it stopped)."""
    first = Answer.of(reference.welcome) if welcome and reference.welcome is not None else None
    answers: list[Answer | None] = [Answer.of(result) for result in reference.turns]
    return first, answers + [None] * (count - len(answers))
