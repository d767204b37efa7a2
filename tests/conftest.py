"""Shared fixtures: fresh random keys per test, settings, and a real server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.redis_server import RestartableRedis, redis_server
from tokens import Keyring, SigningKey


def random_secret() -> str:
    """A fresh 48-byte key; tests never use a key from the repository."""
    return secrets.token_urlsafe(48)


@pytest.fixture
def signing_key() -> SigningKey:
    return SigningKey.from_text("test-key", random_secret())


@pytest.fixture
def keyring(signing_key: SigningKey) -> Keyring:
    return Keyring(signing_key)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server for the session (skipped without one, unless REQUIRE_REDIS=1)."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
async def fresh_redis_url(redis_url: str) -> str:
    """``redis_url`` emptied before the test, so tests do not see each other's keys."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()
    return redis_url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """After the run: how many generated cases each fuzz test ran (tests/fuzz_stats.py)."""
    from tests.fuzz_stats import CASES

    if not CASES:
        return
    terminalreporter.write_sep("-", "fuzz cases run")
    for name, count in sorted(CASES.items()):
        terminalreporter.write_line(f"{count:7d}  {name}")
    terminalreporter.write_line(f"{sum(CASES.values()):7d}  total")


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    """A redis-server of the test's own, which the test may kill and start again."""
    server = RestartableRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()
