"""Running scenarios and saying how they went (``orchestrator test``'s body).

Each scenario is one conversation on a target: in-process through the
configured handler (``HandlerTarget``) or a running server (``ServerTarget``).
Every turn's result is checked against its expectations (and the judge's, when
a turn has ``judge:``); a failing turn prints what was expected and what came
back: text, cards, variables, fallback and latency.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from orchestrator.config import Settings, SettingsError
from orchestrator.control.options import ControlOptions
from orchestrator.handlers.loader import HandlerLoadError, load_handler
from orchestrator.simulate import SimulationError
from orchestrator.testing.engine import (
    ConversationClosed,
    ConversationStuck,
    InProcessConversation,
    close_options,
)
from orchestrator.testing.expect import Mismatch, check
from orchestrator.testing.judge import Judge
from orchestrator.testing.remote import RemoteConversation
from orchestrator.testing.results import TurnResult
from orchestrator.testing.scenario import Expect, Scenario, ScenarioError


class Conversing(Protocol):
    """One conversation of a target (in-process or remote)."""

    async def start(self) -> None: ...

    async def welcome(self) -> TurnResult: ...

    async def say(self, text: str) -> TurnResult: ...

    async def close(self) -> None: ...


class Target(Protocol):
    def open(self, scenario: Scenario) -> Conversing: ...

    async def aclose(self) -> None: ...


class TargetUnavailable(Exception):
    """The target cannot run any scenario (a server that does not answer)."""


class HandlerTarget:
    """In-process: each scenario's handler (its own ``handler:``, else the default
    one) loaded once, as the server loads it (``HandlerLoadError``/``SettingsError``)."""

    def __init__(self, settings: Settings, default_handler: str, scenarios: Sequence[Scenario]):
        self.settings = settings
        self.default = default_handler
        self.options: dict[str, ControlOptions] = {}
        for scenario in scenarios:
            spec = scenario.handler or default_handler
            if spec in self.options:
                continue
            try:
                handler = load_handler(spec, settings)
            except (HandlerLoadError, SettingsError) as exc:
                if scenario.handler is None:
                    raise
                raise ScenarioError(f"{scenario.key('handler')}: {exc}") from None
            self.options[spec] = ControlOptions.from_settings(settings, handler)

    def open(self, scenario: Scenario) -> Conversing:
        options = self.options[scenario.handler or self.default]
        return InProcessConversation(options, claims=scenario.claims, variables=scenario.variables)

    async def aclose(self) -> None:
        for options in self.options.values():
            await close_options(options)


class ServerTarget:
    """A running server at ``base_url``, over its control socket."""

    def __init__(self, base_url: str, *, settle: float = 0.3) -> None:
        self.base_url = base_url
        self.settle = settle

    def open(self, scenario: Scenario) -> Conversing:
        return RemoteConversation(
            self.base_url, claims=scenario.claims, variables=scenario.variables, settle=self.settle
        )

    async def aclose(self) -> None:
        return None


@dataclass
class TurnOutcome:
    label: str  # "welcome" or 'turn 2 "what is my name"'
    result: TurnResult | None
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.mismatches


@dataclass
class ScenarioOutcome:
    scenario: Scenario
    turns: list[TurnOutcome] = field(default_factory=list)
    error: str | None = None  # why it stopped before its last turn
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.error is None and all(turn.passed for turn in self.turns)


async def run_scenario(
    scenario: Scenario, target: Target, judge: Judge | None = None
) -> ScenarioOutcome:
    outcome = ScenarioOutcome(scenario)
    began = time.perf_counter()
    conversation = target.open(scenario)
    try:
        try:
            await conversation.start()
        except SimulationError as exc:
            raise TargetUnavailable(str(exc)) from None
        result = await conversation.welcome()
        if scenario.welcome is not None:
            outcome.turns.append(await _checked("welcome", None, scenario.welcome, result, judge))
        for number, step in enumerate(scenario.steps, start=1):
            assert step.user is not None
            result = await conversation.say(step.user)
            label = f"turn {number} {_quote(step.user)}"
            outcome.turns.append(await _checked(label, step.user, step.expect, result, judge))
    except (ConversationStuck, ConversationClosed, SimulationError) as exc:
        outcome.error = str(exc)
    finally:
        await conversation.close()
        outcome.seconds = time.perf_counter() - began
    return outcome


async def _checked(
    label: str, user: str | None, expect: Expect, result: TurnResult, judge: Judge | None
) -> TurnOutcome:
    mismatches = check(expect, result)
    if expect.judge is not None and judge is not None:
        verdict = await judge.verdict(criterion=expect.judge, user=user, answer=result.text)
        if not verdict.passed:
            mismatches.append(Mismatch("judge", repr(expect.judge), f"no: {verdict.reason}"))
    return TurnOutcome(label, result, mismatches)


def _quote(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


# --- the report -------------------------------------------------------------------------


def failure_lines(outcome: ScenarioOutcome) -> list[str]:
    """What went wrong, turn by turn (expected, then got), for the terminal and JUnit."""
    lines: list[str] = []
    for turn in outcome.turns:
        if turn.passed:
            continue
        lines.append(f"  {turn.label}")
        for mismatch in turn.mismatches:
            lines.extend(mismatch.lines())
        if turn.result is not None:
            lines.append(f"    came back: {describe(turn.result)}")
    if outcome.error is not None:
        lines.append(f"  stopped: {outcome.error}")
    return lines


def describe(result: TurnResult) -> str:
    latency = "no answer" if result.latency_ms is None else f"{result.latency_ms:g} ms"
    return (
        f"text {result.text!r}, cards {json.dumps(result.cards)}, variables "
        f"{_clip(json.dumps(result.variables, ensure_ascii=False, sort_keys=True))}, fallback "
        f"{json.dumps(result.fallback)}, latency {latency}"
    )


def _clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def report(outcome: ScenarioOutcome, out: TextIO) -> None:
    verdict = "PASS" if outcome.passed else "FAIL"
    print(f"{verdict} {outcome.scenario.name} ({outcome.scenario.label})", file=out)
    for line in failure_lines(outcome):
        print(line, file=out)


def summary(outcomes: Sequence[ScenarioOutcome], seconds: float) -> str:
    failed = sum(not o.passed for o in outcomes)
    turns = sum(len(o.turns) for o in outcomes)
    noun = "scenario" if len(outcomes) == 1 else "scenarios"
    return (
        f"{len(outcomes)} {noun}: {len(outcomes) - failed} passed, {failed} failed "
        f"({turns} checked turns, {seconds:.1f} s)"
    )
