"""Per-client-IP rate limiting of the token routes, with the ``limits`` library.

A sliding window counter per IP over every limited path together; memory
storage in one process, Redis storage (shared by all instances) when
``REDIS_URL`` is set. Over the limit: 429, ``Retry-After`` and the usual JSON
error.

Why the sliding window counter and not ``limits``' moving window: the moving
window keeps one entry per hit (up to the limit, per IP), inserts each new one
at the front of a list, and its memory storage expires them in a thread after
every hit; that cost ~32 µs per request at the default limit, more with a
high one. The counter keeps two integers per IP and weights the previous
window by its overlap, which is within a few percent of the moving window's
answer, at ~8 µs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

from tokens.http import error_response

NAMESPACE = "token-routes"


def memory_storage() -> MemoryStorage:
    return MemoryStorage()


def redis_storage(url: str, connection_pool: object) -> RedisStorage:
    """Redis storage on an existing ``redis.asyncio`` pool (its owner closes it)."""
    uri = "async+" + url if not url.startswith("async+") else url
    return RedisStorage(
        uri,
        implementation="redispy",
        key_prefix="tokens-rate-limit",
        connection_pool=connection_pool,  # type: ignore[arg-type]
    )


async def close_storage(storage: Storage) -> None:
    """Stop the memory storage's expiry task (Redis pools are closed by their owner)."""
    timer = getattr(storage, "timer", None)
    if timer is not None and not timer.done():
        timer.cancel()


class RateLimitMiddleware:
    """ASGI middleware limiting requests to ``paths`` per client IP."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        storage: Storage,
        limit: RateLimitItem,
        paths: Iterable[str],
    ) -> None:
        self.app = app
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self.limit = limit
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        if await self.limiter.hit(self.limit, NAMESPACE, ip):
            await self.app(scope, receive, send)
            return
        stats = await self.limiter.get_window_stats(self.limit, NAMESPACE, ip)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        response = error_response(
            429,
            "rate_limited",
            f"too many token requests from this address; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)
