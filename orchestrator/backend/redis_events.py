"""Session events through Redis pub/sub, so every instance's SSE followers see them."""

from __future__ import annotations

import json

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from orchestrator.sessions.events import EventHub, SessionEvent

EVENTS_PREFIX = "orch:events:"


class ClusterEvents(EventHub):
    """Session events through Redis; local delivery when Redis is away.

    Every instance pattern-subscribes ``orch:events:*`` (the cluster's listener)
    and hands what arrives to its local followers.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        super().__init__()
        self.client = client

    def followed(self, session_id: str) -> bool:
        return True  # followers on other instances are not known here

    async def publish(self, event: SessionEvent) -> None:
        payload = json.dumps(event.to_dict(), separators=(",", ":"))
        try:
            await self.client.publish(EVENTS_PREFIX + event.session_id, payload)
        except RedisError:
            self.deliver(event)
