"""Session records in Redis, so every instance sees the same sessions.

One JSON string per session under ``orch:session:<id>`` with a TTL: until the
token expires plus the grace period, or, while a socket is live, an hour that
every save (and the owning instance's heartbeat) renews. Redis errors become
``StoreUnavailable`` (the API answers 503; live sockets carry on).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from orchestrator.sessions.model import Session
from orchestrator.sessions.store import DEFAULT_GRACE_SECONDS, StoreUnavailable

KEY_PREFIX = "orch:session:"
LIVE_RECORD_TTL_SECONDS = 3600
MIN_TTL_SECONDS = 60


@dataclass
class RedisStore:
    client: aioredis.Redis
    _: KW_ONLY
    grace_seconds: int = DEFAULT_GRACE_SECONDS
    clock: Callable[[], float] = time.time

    def ttl_for(self, session: Session) -> int:
        until = session.retained_until(self.grace_seconds)
        if until is None:
            return LIVE_RECORD_TTL_SECONDS
        return max(MIN_TTL_SECONDS, int(until - self.clock()))

    def _expired(self, session: Session) -> bool:
        until = session.retained_until(self.grace_seconds)
        return until is not None and self.clock() >= until

    async def create(self, session: Session) -> None:
        await self.save(session)

    async def create_issued(
        self, session_id: str, *, issuer: str, expires_at: int, claims: Mapping[str, Any]
    ) -> None:
        session = Session(id=session_id, issuer=issuer, expires_at=expires_at, claims=dict(claims))
        await self.save(session)

    async def get(self, session_id: str) -> Session | None:
        try:
            raw = await self.client.get(KEY_PREFIX + session_id)
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from None
        if raw is None:
            return None
        session = Session.from_dict(json.loads(raw))
        return None if self._expired(session) else session

    async def save(self, session: Session) -> None:
        data = json.dumps(session.to_record(), separators=(",", ":"))
        try:
            await self.client.set(KEY_PREFIX + session.id, data, ex=self.ttl_for(session))
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from None

    async def delete(self, session_id: str) -> None:
        try:
            await self.client.delete(KEY_PREFIX + session_id)
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from None

    async def list(self) -> list[Session]:
        sessions: list[Session] = []
        try:
            keys = [key async for key in self.client.scan_iter(match=KEY_PREFIX + "*", count=500)]
            for start in range(0, len(keys), 500):
                for raw in await self.client.mget(keys[start : start + 500]):
                    if raw is not None:
                        sessions.append(Session.from_dict(json.loads(raw)))
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from None
        return [s for s in sessions if not self._expired(s)]

    async def ping(self) -> None:
        try:
            await self.client.ping()
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from None

    async def close(self) -> None:
        """The client is owned (and closed) by the app."""
