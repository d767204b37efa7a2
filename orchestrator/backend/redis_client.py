"""The one way this project makes a Redis client.

Timeouts on every command, and a retry for a command cut by a Redis restart.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

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
