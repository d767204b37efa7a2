"""Choose the session backend: memory (embedded default) or Redis (several instances)."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis

from orchestrator.backend.cluster import Cluster
from orchestrator.backend.memory import MemoryStore
from orchestrator.backend.redis_client import REDIS_SOCKET_TIMEOUT_SECONDS, redis_client
from orchestrator.backend.redis_store import RedisStore
from orchestrator.control.commands import CommandRouter, LocalRouter
from orchestrator.control.connection import ControlConnection
from orchestrator.control.live import LiveConnections
from orchestrator.sessions.events import EventHub
from orchestrator.sessions.store import SessionStore


@dataclass
class Backend:
    """Where sessions live, how events spread and where commands run."""

    name: str
    store: SessionStore
    events: EventHub
    live: LiveConnections[ControlConnection]
    router: CommandRouter
    cluster: Cluster | None = None
    clients: list[aioredis.Redis] = field(default_factory=list)

    async def start(self) -> None:
        if self.cluster is not None:
            await self.cluster.start()

    async def stop(self) -> None:
        if self.cluster is not None:
            await self.cluster.stop()
        await self.store.close()
        for client in self.clients:
            await client.aclose()

    async def check_ready(self) -> None:
        """Raise ``StoreUnavailable`` when the shared store cannot be reached."""
        if isinstance(self.store, RedisStore):
            await self.store.ping()


def build_backend(redis_url: str | None, *, grace_seconds: int) -> Backend:
    if not redis_url:
        live = LiveConnections[ControlConnection]()
        return Backend(
            name="memory",
            store=MemoryStore(grace_seconds=grace_seconds),
            events=EventHub(),
            live=live,
            router=LocalRouter(live),
        )
    client = redis_client(redis_url)
    # Pub/sub waits on its socket for as long as it likes: no read timeout there.
    listener = aioredis.Redis.from_url(
        redis_url, socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS, health_check_interval=15
    )
    live = LiveConnections[ControlConnection]()
    cluster = Cluster(client, listener, live)
    live.registry = cluster
    return Backend(
        name="redis",
        store=RedisStore(client, grace_seconds=grace_seconds),
        events=cluster.events,
        live=live,
        router=cluster,
        cluster=cluster,
        clients=[client, listener],
    )
