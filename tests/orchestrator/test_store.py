"""The memory store: how long a session record stays readable."""

from __future__ import annotations

import pytest

from orchestrator.sessions import Session, SessionStatus
from orchestrator.store import MemoryStore

GRACE = 900


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_an_unused_session_is_forgotten_a_grace_period_after_its_token_expires() -> None:
    """An issued session stays until exp + grace, then reads as unknown."""
    clock = Clock(1_000.0)
    store = MemoryStore(grace_seconds=GRACE, clock=clock)
    await store.create(Session(id="s", issuer="k", expires_at=2_000))
    clock.now = 2_000 + GRACE - 1
    assert await store.get("s") is not None
    clock.now = 2_000 + GRACE
    assert await store.get("s") is None


@pytest.mark.anyio
async def test_a_conversation_that_outlived_its_token_stays_readable_after_it_ends() -> None:
    """A session that ends after exp + grace keeps its record for the grace period
    after its end, so the backend can still read the final transcript."""
    clock = Clock(1_000.0)
    store = MemoryStore(grace_seconds=GRACE, clock=clock)
    session = Session(id="s", issuer="k", expires_at=2_000, status=SessionStatus.CONNECTED)
    await store.create(session)
    clock.now = 10_000.0
    assert await store.get("s") is session  # connected: never expires
    session.status = SessionStatus.ENDED
    session.ended_at = clock.now
    await store.save(session)
    assert await store.get("s") is session
    assert [s.id for s in await store.list()] == ["s"]
    clock.now = 10_000 + GRACE
    assert await store.get("s") is None
