"""Choose the session backend: memory (embedded default) or Redis (several instances)."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from .cluster import Cluster
from .commands import CommandRouter, LocalRouter
from .control import LiveConnections
from .events import EventHub
from .redis_store import RedisStore
from .store import MemoryStore, SessionStore

REDIS_SOCKET_TIMEOUT_SECONDS = 2.0


def redis_client(url: str) -> aioredis.Redis:
    """A client that survives a Redis restart: a command that fails with
    ``ConnectionError`` (on a pooled connection the restart cut, say) is retried
    twice on a fresh connection, within ~0.2 s. Timeouts are not retried, so an
    unreachable Redis costs one connect timeout, not three."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 2, (RedisConnectionError,)),
    )


@dataclass
class Backend:
    """Where sessions live, how events spread and where commands run."""

    name: str
    store: SessionStore
    events: EventHub
    live: LiveConnections
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
        live = LiveConnections()
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
    live = LiveConnections()
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
