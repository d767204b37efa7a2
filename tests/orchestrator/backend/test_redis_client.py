"""The Redis client every backend piece uses: a burst larger than its pool queues."""

from __future__ import annotations

import asyncio

import pytest

from orchestrator.backend.redis_client import redis_client

pytestmark = pytest.mark.redis

# More at once than redis-py's default pool holds (100 in redis-py 8): a reconnect
# storm (bench/reconnect_storm.py) reads, claims and saves that many sessions at once.
BURST = 150


@pytest.mark.anyio
async def test_a_burst_of_more_commands_than_the_pool_holds_waits_instead_of_failing(
    fresh_redis_url: str,
) -> None:
    """Each command holds its connection for 0.1 s; the ones past the pool wait their turn."""
    client = redis_client(fresh_redis_url)
    try:
        answers = await asyncio.gather(
            *(client.blpop(["nothing-here"], timeout=0.1) for _ in range(BURST))
        )
    finally:
        await client.aclose()
    assert answers == [None] * BURST
