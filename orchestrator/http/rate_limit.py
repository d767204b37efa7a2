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

If Redis stops answering, requests are limited per process (a memory fallback)
for ``STORAGE_RETRY_SECONDS`` at a time, then Redis is tried again: no 500s,
no unlimited window, one warning when it goes and one line (with the count of
requests that fell back) when it returns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.logs import error_reason, get_logger
from tokens.web.http import error_response

NAMESPACE = "token-routes"
STORAGE_RETRY_SECONDS = 5.0

log = get_logger("orchestrator.rate_limit")


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
    """ASGI middleware limiting requests to ``paths`` per client IP.

    ``fallback`` (memory) limits while ``storage`` (Redis) raises ``RedisError``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        storage: Storage,
        limit: RateLimitItem,
        paths: Iterable[str],
        fallback: Storage | None = None,
    ) -> None:
        self.app = app
        self.limiter = SlidingWindowCounterRateLimiter(storage)
        self.fallback = SlidingWindowCounterRateLimiter(fallback) if fallback else None
        self.limit = limit
        self.paths = frozenset(paths)
        # Monotonic time until which the fallback limits (0: storage in use).
        self._fallback_until = 0.0
        self._fallen_back = 0

    async def _retry_after(self, limiter: SlidingWindowCounterRateLimiter, ip: str) -> int | None:
        """``None`` if ``ip`` may go on, else seconds until it may."""
        if await limiter.hit(self.limit, NAMESPACE, ip):
            return None
        stats = await limiter.get_window_stats(self.limit, NAMESPACE, ip)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def _check(self, ip: str) -> int | None:
        if self.fallback is None:
            return await self._retry_after(self.limiter, ip)
        if self._fallback_until and time.monotonic() < self._fallback_until:
            self._fallen_back += 1
            return await self._retry_after(self.fallback, ip)
        try:
            retry_after = await self._retry_after(self.limiter, ip)
        except RedisError as exc:
            if not self._fallback_until:
                log.warning(
                    "rate limit storage unreachable: limiting per process until it answers",
                    error=error_reason(exc),
                    retry_seconds=STORAGE_RETRY_SECONDS,
                )
            self._fallback_until = time.monotonic() + STORAGE_RETRY_SECONDS
            self._fallen_back += 1
            return await self._retry_after(self.fallback, ip)
        if self._fallback_until:
            log.info("rate limit storage reachable again", limited_per_process=self._fallen_back)
            self._fallback_until = 0.0
            self._fallen_back = 0
        return retry_after

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        retry_after = await self._check(ip)
        if retry_after is None:
            await self.app(scope, receive, send)
            return
        response = error_response(
            429,
            "rate_limited",
            f"too many token requests from this address; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)
