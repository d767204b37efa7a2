"""Matching responses to the server's own requests."""

from __future__ import annotations

import pytest

from orchestrator.control.protocol import Envelope
from orchestrator.control.transactions import PendingRequests


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_a_response_resolves_its_request() -> None:
    """A response carrying our transaction id resolves the awaiting future."""
    pending = PendingRequests(timeout_seconds=5)
    request = pending.issue("startSpeaking", await_response=True)
    matched = pending.resolve(Envelope("response", "startSpeaking", {}, request.transaction, 0))
    assert matched is request
    assert request.future is not None and (await request.future).status == 0
    assert len(pending) == 0


@pytest.mark.anyio
async def test_responses_to_foreign_transactions_are_ignored() -> None:
    """Responses to ids we never issued (the browser's own) match nothing."""
    pending = PendingRequests(timeout_seconds=5)
    pending.issue("startSpeaking")
    for foreign in (1, "1", "scene_1", None, "orch-999"):
        assert pending.resolve(Envelope("response", "x", {}, foreign, 0)) is None
    assert len(pending) == 1


@pytest.mark.anyio
async def test_unanswered_requests_expire() -> None:
    """A request without a response within the timeout is dropped and reported."""
    clock = FakeClock()
    pending = PendingRequests(timeout_seconds=5, clock=clock)
    request = pending.issue("stopSpeaking", await_response=True)
    clock.now += 4
    assert pending.expire() == []
    clock.now += 2
    assert pending.expire() == [request]
    assert request.future is not None and request.future.cancelled()


@pytest.mark.anyio
async def test_pending_requests_are_bounded() -> None:
    """Past the bound the oldest outstanding request is dropped."""
    pending = PendingRequests(timeout_seconds=60, max_pending=3)
    first = pending.issue("a")
    for name in "bcd":
        pending.issue(name)
    assert len(pending) == 3
    assert pending.resolve(Envelope("response", "a", {}, first.transaction, 0)) is None


@pytest.mark.anyio
async def test_expiry_takes_the_overdue_requests_in_issue_order_and_keeps_the_rest() -> None:
    """Requests issued later expire later: the overdue ones go, oldest first, the others stay."""
    clock = FakeClock()
    pending = PendingRequests(timeout_seconds=5, clock=clock)
    early = [pending.issue("startSpeaking") for _ in range(3)]
    clock.now += 3
    late = [pending.issue("conversationResponse") for _ in range(2)]
    clock.now += 2.5
    assert pending.expire() == early
    assert len(pending) == len(late)
    clock.now += 3
    assert pending.expire() == late
    assert pending.expire() == []
