"""Session events for live followers (the SSE stream): turns, speech state,
variables changed, connected/ended.

The hub delivers to this process's subscribers; each subscriber has a bounded
queue, and a follower too slow to keep up loses its oldest events rather than
growing memory.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

SUBSCRIBER_QUEUE_SIZE = 256


@dataclass(frozen=True, slots=True)
class SessionEvent:
    session_id: str
    type: str
    data: dict[str, Any]
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "type": self.type, "data": self.data, "at": self.at}


class EventHub:
    """In-process publish/subscribe of session events."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[SessionEvent]]] = defaultdict(set)

    async def publish(self, event: SessionEvent) -> None:
        self.deliver(event)

    def followed(self, session_id: str) -> bool:
        """Whether an event of this session may reach anyone (else it need not be made)."""
        return session_id in self._subscribers

    async def publish_event(self, session_id: str, event_type: str, data: dict[str, Any]) -> None:
        await self.publish(SessionEvent(session_id, event_type, data))

    def deliver(self, event: SessionEvent) -> None:
        for queue in self._subscribers.get(event.session_id, ()):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[asyncio.Queue[SessionEvent]]:
        queue: asyncio.Queue[SessionEvent] = asyncio.Queue(SUBSCRIBER_QUEUE_SIZE)
        self._subscribers[session_id].add(queue)
        try:
            yield queue
        finally:
            subscribers = self._subscribers.get(session_id)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[session_id]

    async def close(self) -> None:
        self._subscribers.clear()
