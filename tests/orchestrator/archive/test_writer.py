"""The writer: off the conversation path, nothing lost while the database is away."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from orchestrator.archive.record import ArchivedSession, ClaimPolicy
from orchestrator.archive.store import ArchiveStore
from orchestrator.archive.writer import BATCH, SPILL_KEY, ArchiveWriter
from orchestrator.sessions.model import Session
from tests.orchestrator.archive.conftest import fresh_database
from tests.orchestrator.archive.test_store import record
from tests.postgres_server import RestartablePostgres

pytestmark = pytest.mark.anyio


def ended_session(n: int) -> Session:
    session = Session(id=f"s-{n:05d}", issuer="key", expires_at=int(time.time()) + 600)
    session.add_turn("user", f"hello {n}")
    session.add_turn("dp", f"You said: hello {n}")
    session.mark_ended()
    return session


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 30.0) -> None:
    """``cluster_helpers.until`` for an async check."""
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def own_postgres() -> AsyncIterator[RestartablePostgres]:
    """A cluster of the test's own, which it may kill and start again."""
    server = await asyncio.to_thread(RestartablePostgres)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.remove)


async def archived(url: str) -> int:
    store = ArchiveStore(url)
    try:
        return await store.count()
    finally:
        await store.close()


async def test_shutdown_flushes_every_queued_session(archive_url: str) -> None:
    writer = ArchiveWriter(ArchiveStore(archive_url))
    await writer.start()
    for n in range(250):
        writer.session_ended(ended_session(n))
    await writer.stop()
    assert await archived(archive_url) == 250


async def test_a_full_queue_without_redis_drops_and_counts(tmp_path: object) -> None:
    writer = ArchiveWriter(ArchiveStore("sqlite:///:memory:"), queue_size=3)
    for n in range(5):  # not started: nothing drains the queue
        writer.session_ended(ended_session(n))
    assert writer.queued() == 3
    assert writer.metrics.dropped._value.get() == 2


async def test_every_session_ended_while_the_database_was_killed_arrives_once_it_is_back(
    own_postgres: RestartablePostgres,
) -> None:
    url = await asyncio.to_thread(fresh_database, own_postgres)
    writer = ArchiveWriter(ArchiveStore(url))
    await writer.start()
    try:
        for n in range(300):
            writer.session_ended(ended_session(n))
            if n == 100:
                await asyncio.to_thread(own_postgres.kill)
            if n == 200:
                await asyncio.sleep(0.5)  # writes fail and back off meanwhile
                assert writer.status()["status"] == "unavailable"
                await asyncio.to_thread(own_postgres.start)
            await asyncio.sleep(0)
        await until(lambda: _count_is(url, 300))
        assert writer.metrics.write_failures._value.get() > 0
        assert writer.status() == {"status": "ok", "queued": 0}
    finally:
        await writer.stop()


async def _count_is(url: str, expected: int) -> bool:
    try:
        return await archived(url) == expected
    except Exception:
        return False


async def test_with_redis_another_instance_archives_what_one_could_not(
    own_postgres: RestartablePostgres, fresh_redis_url: str
) -> None:
    url = await asyncio.to_thread(fresh_database, own_postgres)
    await asyncio.to_thread(own_postgres.kill)
    first = ArchiveWriter(ArchiveStore(url), redis_url=fresh_redis_url)
    await first.start()
    for n in range(40):
        first.session_ended(ended_session(n))
    await first.stop()  # the database is down: parked in Redis, not lost
    assert first.metrics.spilled._value.get() == 40
    assert first.metrics.dropped._value.get() == 0
    await asyncio.to_thread(own_postgres.start)
    second = ArchiveWriter(ArchiveStore(url), redis_url=fresh_redis_url)
    await second.start()
    try:
        await until(lambda: _count_is(url, 40))
    finally:
        await second.stop()


async def test_the_retention_purge_runs_again_by_itself(archive_url: str) -> None:
    """Sessions that end past the retention go at the next periodic purge, not just at
    start-up; ones inside it stay."""
    store = ArchiveStore(archive_url)
    writer = ArchiveWriter(store, retention_days=1, purge_interval=0.05)
    await writer.start()
    try:
        # Written after start-up, so only a later, periodic purge can remove the old one.
        old, recent = record(1, ended_at=time.time() - 2 * 86_400), record(2, ended_at=time.time())
        assert await store.write([old, recent]) == 2

        async def old_purged() -> bool:
            return await store.get(old.id) is None

        await until(old_purged, seconds=10)
        assert await store.get(recent.id) == recent
    finally:
        await writer.stop()  # closes the store


class SlowStore(ArchiveStore):
    """A store whose writes wait for ``release``, so sessions can end mid-write."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.release = asyncio.Event()
        self.writing = asyncio.Event()

    async def write(self, records: Sequence[ArchivedSession]) -> int:
        records = list(records)  # what a real write has read before it awaits the database
        self.writing.set()
        await self.release.wait()
        return await super().write(records)


async def test_sessions_that_overflow_during_a_write_are_archived_too(
    tmp_path: Path, fresh_redis_url: str
) -> None:
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    store = SlowStore(url)
    writer = ArchiveWriter(store, queue_size=1, redis_url=fresh_redis_url)
    await writer.start()
    writer.session_ended(ended_session(0))
    await store.writing.wait()
    for n in range(1, 4):
        writer.session_ended(ended_session(n))
    store.release.set()
    await writer.stop()
    assert await archived(url) == 4


async def test_the_overflow_is_bounded_when_database_and_redis_are_both_away() -> None:
    writer = ArchiveWriter(
        ArchiveStore("sqlite:///:memory:"), queue_size=2, redis_url="redis://127.0.0.1:1"
    )
    for n in range(2 + 2 + BATCH + 5):  # not started: nothing drains
        writer.session_ended(ended_session(n))
    assert writer.queued() == 2 + 2 + BATCH
    assert writer.metrics.dropped._value.get() == 5
    assert writer.redis is not None
    await writer.redis.aclose()


async def test_a_record_the_database_refuses_is_set_aside_and_the_rest_are_written(
    postgres: RestartablePostgres,
) -> None:
    url = await asyncio.to_thread(fresh_database, postgres)
    writer = ArchiveWriter(ArchiveStore(url))
    await writer.start()
    bad = ArchivedSession.of(ended_session(0), "disconnected", writer.policy)
    bad = replace(bad, transcript=({"role": "user", "text": "nul \u0000 here", "at": 1.0},))
    writer._queue.append(bad)  # as a record parked in Redis by an older instance arrives
    for n in range(1, 6):
        writer.session_ended(ended_session(n))
    await until(lambda: _count_is(url, 5))
    assert writer.available
    assert writer.metrics.refused._value.get() == 1
    writer.session_ended(ended_session(6))
    await writer.stop()
    assert await archived(url) == 6


def test_nul_characters_and_overlong_ids_are_made_storable() -> None:
    session = ended_session(0)
    session.id = "s" * 300
    session.issuer = "i\u0000" * 300
    session.add_turn("user", "a\u0000b")
    session.claims = {"c\u0000": "v\u0000", "n": {"x": ["y\u0000"]}}
    session.variables = {"v": "w\u0000"}
    record = ArchivedSession.of(session, "disconnected", ClaimPolicy())
    assert len(record.id) <= 128 and len(record.issuer) <= 256
    assert "\u0000" not in json.dumps(record.to_dict())
    assert record.transcript[-1]["text"] == "ab"


def test_a_records_transcript_is_what_it_reads_back_as_from_the_sessions_api_view() -> None:
    """Built straight from the lines, the record's transcript equals the general
    path (the sessions API's turn dicts, kept fields only, NUL removed)."""
    session = ended_session(0)
    session.add_turn("user", "x\u0000" * 5000)  # cut to MAX_TURN_CHARS: original_length
    reply = session.add_turn("d\u0000p", "sure\u0000", fallback=True, timed=True)
    session.record_latency(reply, {"handler_done": 1.5, "first\u0000frame": 2})
    session.add_turn("dp", "untimed")
    session.add_turn("dp", "timed, not yet sent", timed=True)
    record = ArchivedSession.of(session, "disconnected", ClaimPolicy())
    assert record.transcript == transcript_read_from_the_api_view(session)
    assert record.transcript[3]["latency_ms"] == {"handler_done": 1.5, "firstframe": 2.0}
    assert record.transcript[2]["original_length"] == 10000
    assert "latency_ms" not in record.transcript[4] and record.transcript[5]["latency_ms"] == {}


def transcript_read_from_the_api_view(session: Session) -> tuple[dict[str, Any], ...]:
    """The transcript as ``from_dict`` reads the sessions API's view, NUL removed."""
    view_json = json.dumps(session.to_dict()["transcript"]).replace("\\u0000", "")
    fields = {"id": "x", "issuer": "x", "ended_at": 0, "end_reason": "x", "created_at": 0}
    return ArchivedSession.from_dict({**fields, "transcript": json.loads(view_json)}).transcript


class FailingOnceStore(ArchiveStore):
    """A store whose first write raises what no one expected."""

    failed = False

    async def write(self, records: Sequence[ArchivedSession]) -> int:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug")
        return await super().write(records)


async def test_an_unexpected_error_does_not_end_the_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    writer = ArchiveWriter(FailingOnceStore(url))
    await writer.start()
    writer.session_ended(ended_session(0))
    await until(lambda: _count_is(url, 1))
    writer.session_ended(ended_session(1))
    await writer.stop()
    assert await archived(url) == 2


async def test_stop_spills_and_closes_even_when_a_task_failed(
    fresh_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("orchestrator.archive.writer.FLUSH_TIMEOUT_SECONDS", 0.1)
    store = ArchiveStore("sqlite:///:memory:")
    writer = ArchiveWriter(store, redis_url=fresh_redis_url)

    async def broken() -> None:
        raise RuntimeError("a bug")

    writer._tasks = [asyncio.create_task(broken())]
    await asyncio.sleep(0)
    writer._queue.append(ArchivedSession.of(ended_session(0), "shutdown", writer.policy))
    await writer.stop()
    redis = Redis.from_url(fresh_redis_url)
    try:
        assert await redis.llen(SPILL_KEY) == 1
    finally:
        await redis.aclose()


async def test_records_taken_from_redis_are_parked_again_when_stop_interrupts_their_write(
    tmp_path: Path, fresh_redis_url: str
) -> None:
    store = SlowStore(f"sqlite:///{tmp_path / 'archive.db'}")
    writer = ArchiveWriter(store, redis_url=fresh_redis_url)
    parked = ArchivedSession.of(ended_session(0), "disconnected", writer.policy)
    redis = Redis.from_url(fresh_redis_url)
    try:
        await redis.rpush(SPILL_KEY, json.dumps(parked.to_dict()))
        await writer.start()
        await store.writing.wait()  # drained from Redis, being written
        await writer.stop()
        assert await redis.llen(SPILL_KEY) == 1
    finally:
        await redis.aclose()


def test_credential_like_names_are_dropped_at_every_level() -> None:
    session = ended_session(0)
    names = ["x-api-key", "API-Key", "access_key", "private_key", "credentials", "jwt"]
    names += ["Bearer", "auth", "Authorization", "user_token"]
    session.claims = {**dict.fromkeys(names, "x"), "author": "kept", "cfg": {"password": "x"}}
    session.variables = {"cfg": {"password": "x", "deep": [{"apiKey": "x", "ok": 1}]}, "n": 1}
    record = ArchivedSession.of(session, "disconnected", ClaimPolicy())
    assert record.claims == {"author": "kept", "cfg": {}}
    assert record.variables == {"cfg": {"deep": [{"ok": 1}]}, "n": 1}
