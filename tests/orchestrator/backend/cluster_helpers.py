"""Helpers the Redis-backed tests share: an instance's environment, and waiting on a condition."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tests.conftest import random_secret


def cluster_env(redis_url: str, api_key: str, **extra: str) -> dict[str, str]:
    """The environment of one instance of a cluster on ``redis_url`` (one shared key)."""
    return {
        "JWT_PUBLIC_KEY": "cluster-key",
        "JWT_PRIVATE_KEY": random_secret(),
        "REDIS_URL": redis_url,
        "ORCHESTRATOR_API_KEY": api_key,
        **extra,
    }


async def until(predicate: Callable[[], object], seconds: float = 10.0) -> None:
    """Wait until ``predicate()`` is true, polling every 50 ms; fail after ``seconds``."""
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")
