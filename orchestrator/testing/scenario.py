"""Scenario files: YAML or JSON, one conversation per file or a list of them.

::

    name: remembers the user's name        # optional
    handler: my_bot:handle                 # optional: instead of --handler
    claims: {user: Ada}                    # optional: the session's custom claims
    variables: {plan: gold}                # optional: the variables it starts with
    turns:
      - welcome: {says: {contains: Hello}} # the init turn's expectations (first only)
      - user: my name is Ada
        expect:
          says: Nice to meet you, Ada.     # exact, or {contains: ...}, {matches: regex}
          cards: []                        # ids of the cards shown
          variables: {name: Ada}           # a subset the session holds after the turn
          fallback: false
          judge: greets Ada by name        # a model decides whether the answer meets it
          within_ms: 2000                  # latency budget

Everything is checked when the file is read: an unknown key, a value of the
wrong kind or a turn with no ``user`` is a ``ScenarioError`` naming the file
and the key, before any conversation runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 4 * 1024 * 1024
SCENARIO_KEYS = ("name", "handler", "claims", "variables", "turns")
TURN_KEYS = ("welcome", "user", "expect", "judge", "within_ms")
EXPECT_KEYS = ("says", "cards", "variables", "fallback", "judge", "within_ms")
SAYS_KEYS = ("contains", "matches")


class _NoAliases(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no type hints
    """``safe_load`` without aliases: a few lines of ``*name`` could stand for
    billions of values (the "billion laughs"), which reading them would build."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
        return super().compose_node(parent, index)


class ScenarioError(ValueError):
    """A scenario file that cannot run; the message is one line naming file and key."""


@dataclass(frozen=True)
class Says:
    """What the text must be: ``exact``, ``contains`` or ``matches`` (a regex, searched)."""

    how: str
    value: str

    def matches(self, text: str) -> bool:
        if self.how == "exact":
            return text == self.value
        if self.how == "contains":
            return self.value in text
        return re.search(self.value, text) is not None

    def describe(self) -> str:
        return repr(self.value) if self.how == "exact" else f"{self.how} {self.value!r}"


@dataclass(frozen=True)
class Expect:
    """A turn's expectations; ``None`` (or empty) is not checked."""

    says: Says | None = None
    cards: list[str] | None = None
    variables: dict[str, Any] | None = None
    fallback: bool | None = None
    judge: str | None = None
    within_ms: float | None = None


@dataclass(frozen=True)
class Step:
    """One turn: the user's words (``None``: the init turn) and what must come back."""

    user: str | None
    expect: Expect

    @property
    def is_welcome(self) -> bool:
        return self.user is None


@dataclass(frozen=True)
class Scenario:
    name: str
    source: str  # the file, as named on the command line
    where: str = ""  # "[2]" in a file holding a list, else ""
    handler: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    welcome: Expect | None = None
    steps: list[Step] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.source}{self.where}"

    def key(self, name: str) -> str:
        """``file: key`` for one of this scenario's keys, as errors name them."""
        return f"{self.source}: {_join(self.where, name)}"

    @property
    def expectations(self) -> list[Expect]:
        welcome = [] if self.welcome is None else [self.welcome]
        return welcome + [step.expect for step in self.steps]

    @property
    def user_turns(self) -> list[str]:
        return [step.user for step in self.steps if step.user is not None]


def scenario_files(paths: Iterable[str]) -> list[Path]:
    """The files named, directories searched for ``*.yaml``, ``*.yml`` and ``*.json``."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
            if not found:
                raise ScenarioError(f"{name}: no scenario files (*.yaml, *.yml, *.json) in it")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ScenarioError(f"{name}: no such file or directory")
    return files


def load_file(path: Path) -> list[Scenario]:
    """Every scenario of one file (``ScenarioError`` for anything wrong in it)."""
    source = str(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(f"{source}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(f"{source}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ScenarioError(f"{source}: not UTF-8 text") from None
    document = _parse(source, text, json_file=path.suffix == ".json")
    return parse_document(document, source)


def _parse(source: str, text: str, *, json_file: bool) -> Any:
    if json_file:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScenarioError(
                f"{source}: JSON syntax error at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
    try:
        return yaml.load(text, Loader=_NoAliases)  # noqa: S506 (a safe loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise ScenarioError(f"{source}: YAML syntax error{at}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: YAML error: {exc}") from None


def parse_document(document: Any, source: str) -> list[Scenario]:
    """The scenarios of one parsed file: a mapping, or a list of mappings."""
    if isinstance(document, list):
        if not document:
            raise ScenarioError(f"{source}: an empty list (no scenario)")
        return [_scenario(item, source, f"[{index}]") for index, item in enumerate(document)]
    return [_scenario(document, source, "")]


def _fail(source: str, key: str, problem: str) -> ScenarioError:
    return ScenarioError(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


def _mapping(value: Any, source: str, key: str, allowed: Iterable[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _fail(source, key, f"expected a mapping of {', '.join(allowed)}")
    allowed = tuple(allowed)
    for name in value:
        if name not in allowed:
            raise _fail(
                source,
                _join(key, str(name)),
                f"unknown key (expected one of {', '.join(allowed)})",
            )
    return value


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _scenario(value: Any, source: str, where: str) -> Scenario:
    body = _mapping(value, source, where, SCENARIO_KEYS)
    name = _text(body.get("name"), source, _join(where, "name"), optional=True)
    handler = _text(body.get("handler"), source, _join(where, "handler"), optional=True)
    claims = _object(body.get("claims"), source, _join(where, "claims"))
    variables = _object(body.get("variables"), source, _join(where, "variables"))
    turns_key = _join(where, "turns")
    turns = body.get("turns")
    if not isinstance(turns, list) or not turns:
        raise _fail(source, turns_key, "expected a list of turns (at least one)")
    welcome: Expect | None = None
    steps: list[Step] = []
    for index, turn in enumerate(turns):
        key = f"{turns_key}[{index}]"
        step = _step(turn, source, key, first=index == 0)
        if step.is_welcome:
            welcome = step.expect
        else:
            steps.append(step)
    return Scenario(
        name=name or Path(source).stem + where,
        source=source,
        where=where,
        handler=handler,
        claims=claims,
        variables=variables,
        welcome=welcome,
        steps=steps,
    )


def _step(value: Any, source: str, key: str, *, first: bool) -> Step:
    body = _mapping(value, source, key, TURN_KEYS)
    if "welcome" in body:
        if not first:
            raise _fail(source, f"{key}.welcome", "only the first turn can be the welcome")
        for name in ("user", "expect", "judge", "within_ms"):
            if name in body:
                raise _fail(source, f"{key}.{name}", "a welcome turn holds its expectations")
        expected = body["welcome"]
        return Step(None, _expect({} if expected is None else expected, source, f"{key}.welcome"))
    if "user" not in body:
        raise _fail(source, key, "a turn needs `user` (what the user says), or `welcome` first")
    user = body["user"]
    if isinstance(user, int | float) and not isinstance(user, bool):
        user = str(user)
    if not isinstance(user, str):
        raise _fail(source, f"{key}.user", "expected the user's words as text")
    expected = body.get("expect")
    expect = _expect({} if expected is None else expected, source, f"{key}.expect")
    for name in ("judge", "within_ms"):
        if name in body:
            if getattr(expect, name) is not None:
                raise _fail(source, f"{key}.{name}", f"given twice (here and in expect.{name})")
            if name == "judge":
                expect = replace(expect, judge=_judge(body[name], source, f"{key}.judge"))
            else:
                expect = replace(expect, within_ms=_budget(body[name], source, f"{key}.within_ms"))
    return Step(user, expect)


def _expect(value: Any, source: str, key: str) -> Expect:
    body = _mapping(value, source, key, EXPECT_KEYS)
    says = _says(body["says"], source, f"{key}.says") if "says" in body else None
    cards = None
    if "cards" in body:
        cards = body["cards"]
        if not isinstance(cards, list) or not all(isinstance(c, str | int) for c in cards):
            raise _fail(source, f"{key}.cards", "expected a list of card ids")
        cards = [str(card) for card in cards]
    variables = (
        _object(body["variables"], source, f"{key}.variables") if "variables" in body else None
    )
    fallback = body.get("fallback")
    if fallback is not None and not isinstance(fallback, bool):
        raise _fail(source, f"{key}.fallback", "expected true or false")
    judge = _judge(body["judge"], source, f"{key}.judge") if "judge" in body else None
    within = _budget(body["within_ms"], source, f"{key}.within_ms") if "within_ms" in body else None
    return Expect(says, cards, variables, fallback, judge, within)


def _says(value: Any, source: str, key: str) -> Says:
    if isinstance(value, str):
        return Says("exact", value)
    body = _mapping(value, source, key, SAYS_KEYS)
    if len(body) != 1:
        raise _fail(source, key, "expected text, {contains: text} or {matches: regex}")
    ((how, text),) = body.items()
    if not isinstance(text, str):
        raise _fail(source, f"{key}.{how}", "expected text")
    if how == "matches":
        try:
            re.compile(text)
        except re.error as exc:
            raise _fail(source, f"{key}.matches", f"not a regular expression: {exc}") from None
    return Says(how, text)


def _text(value: Any, source: str, key: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(source, key, "expected non-empty text")
    return value


def _judge(value: Any, source: str, key: str) -> str:
    text = _text(value, source, key)
    assert text is not None
    return text


def _object(value: Any, source: str, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(name, str) for name in value):
        raise _fail(source, key, "expected a mapping of names to values")
    try:
        plain: dict[str, Any] = json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError):
        raise _fail(source, key, "values must be plain JSON (text, numbers, lists, maps)") from None
    return plain


def _budget(value: Any, source: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e9:
        raise _fail(source, key, "expected a positive number of milliseconds")
    return float(value)
