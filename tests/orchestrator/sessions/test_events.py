"""orchestrator.sessions.events: who hears a session's events."""

from __future__ import annotations

import pytest

from orchestrator.backend.redis_events import ClusterEvents
from orchestrator.sessions.events import EventHub, SessionEvent


@pytest.mark.anyio
async def test_a_session_is_followed_only_while_someone_subscribes() -> None:
    """Without a follower no event need be made; with one, each event reaches it."""
    hub = EventHub()
    assert not hub.followed("s1")
    async with hub.subscribe("s1") as queue:
        assert hub.followed("s1")
        assert not hub.followed("s2")
        await hub.publish(SessionEvent("s1", "turn", {"text": "hi"}))
        assert queue.get_nowait().data == {"text": "hi"}
    assert not hub.followed("s1")


def test_with_redis_every_session_may_be_followed_on_another_instance() -> None:
    """This instance cannot see other instances' followers, so it always publishes."""
    events = ClusterEvents(client=None)  # type: ignore[arg-type]  # not used by followed()
    assert events.followed("any-session")
