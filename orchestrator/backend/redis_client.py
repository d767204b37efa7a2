"""The one way this project makes a Redis client.

Timeouts on every command, a retry for a command cut by a Redis restart, and a
bounded pool that makes a burst wait for a connection instead of failing.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

REDIS_SOCKET_TIMEOUT_SECONDS = 2.0
# Per client. redis-py's own pool of this size raises MaxConnectionsError on the
# next concurrent command: a reconnect storm (hundreds of handshakes, claims and
# saves at once) lost sessions' records and registry entries to it.
REDIS_MAX_CONNECTIONS = 100


def redis_client(url: str) -> aioredis.Redis:
    """A client that survives a Redis restart and a burst.

    A command that fails with ``ConnectionError`` (on a pooled connection the
    restart cut, say) is retried twice on a fresh connection, within ~0.2 s.
    Timeouts are not retried, so an unreachable Redis costs one connect timeout,
    not three. At most ``REDIS_MAX_CONNECTIONS`` commands are in flight; the
    rest wait for a connection (up to the socket timeout) rather than fail."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_MAX_CONNECTIONS,
        timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 2, (RedisConnectionError,)),
    )
    return aioredis.Redis.from_pool(pool)


def redis_target(client: aioredis.Redis) -> str:
    """``host:port/db`` (or ``unix:path/db``) of ``client``'s server, for log lines:
    never the password."""
    kwargs = client.connection_pool.connection_kwargs
    db = kwargs.get("db", 0)
    if kwargs.get("path"):
        return f"unix:{kwargs['path']}/{db}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{db}"
