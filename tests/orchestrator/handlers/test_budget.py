"""The per-session budget on its own (a clock the test moves: no sleeping). The
handlers' use of it, over real servers, is in test_llm_e2e.py and test_webhook*.py."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from orchestrator.handlers.api import END_DISCONNECTED, END_TERMINATED
from orchestrator.handlers.budget import INPUT, REQUESTS, OverBudget, SessionBudget
from orchestrator.metrics import Metrics

METRICS = Metrics(lambda: 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def budget(clock: Clock, *, requests: int = 3, chars: int = 1000) -> SessionBudget:
    return SessionBudget(
        "test", requests_per_minute=requests, input_chars_per_minute=chars, clock=clock
    )


def refusals(reason: str) -> float:
    labels = {"handler": "test", "reason": reason}
    value = METRICS.registry.get_sample_value("orchestrator_handler_refusals_total", labels)
    return value or 0.0


def test_requests_past_the_limit_are_refused_until_the_oldest_leaves_the_window() -> None:
    clock = Clock()
    spend = budget(clock)
    before = refusals(REQUESTS)
    for _ in range(3):
        spend.charge("s", 10)
        clock.now += 10
    with pytest.raises(OverBudget) as refused:
        spend.charge("s", 10)
    assert refused.value.reason == REQUESTS
    assert refusals(REQUESTS) == before + 1
    spend.charge("other", 10)  # another session has its own budget
    clock.now = 1000.0 + 60.0  # the first request is 60 s old: it no longer counts
    spend.charge("s", 10)
    with pytest.raises(OverBudget):
        spend.charge("s", 10)


def test_characters_past_the_limit_are_refused_and_a_refused_request_costs_nothing() -> None:
    clock = Clock()
    spend = budget(clock, requests=100)
    spend.charge("s", 600)
    before = refusals(INPUT)
    with pytest.raises(OverBudget) as refused:
        spend.charge("s", 401)
    assert refused.value.reason == INPUT
    assert refusals(INPUT) == before + 1
    spend.charge("s", 400)  # exactly the limit: the refusal above was not counted in
    clock.now += 60.0
    spend.charge("s", 1000)


def test_a_run_of_refusals_is_logged_once() -> None:
    clock = Clock()
    spend = budget(clock, requests=1)
    spend.charge("s", 1)
    with capture_logs() as logs:
        for _ in range(50):
            with pytest.raises(OverBudget):
                spend.charge("s", 1)
        clock.now += 60.0
        spend.charge("s", 1)
        with pytest.raises(OverBudget):
            spend.charge("s", 1)
    lines = [line for line in logs if line["event"].startswith("session over its budget")]
    assert len(lines) == 2
    assert lines[0]["reason"] == REQUESTS
    assert lines[0]["session_id"] == "s"


def test_state_is_released_at_the_end_and_swept_for_sessions_gone_quiet() -> None:
    clock = Clock()
    spend = budget(clock)
    spend.charge("ended", 1)
    spend.ended("ended", END_DISCONNECTED)  # its token may reconnect: the budget stays
    assert len(spend) == 1
    spend.ended("ended", END_TERMINATED)
    assert len(spend) == 0
    for index in range(100):
        spend.charge(f"quiet-{index}", 1)
    clock.now += 61.0
    spend.charge("active", 1)  # the sweep, at most once a window, drops the quiet ones
    assert len(spend) == 1


def test_zero_turns_a_limit_off() -> None:
    clock = Clock()
    spend = budget(clock, requests=0, chars=0)
    for _ in range(1000):
        spend.charge("s", 10**6)
    assert len(spend) == 0  # no state at all
    only_chars = budget(clock, requests=0, chars=10)
    for _ in range(10):
        only_chars.charge("s", 1)
    with pytest.raises(OverBudget):
        only_chars.charge("s", 1)
