"""The archive store on SQLite and PostgreSQL: upserts, filters, pages, erasure."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.dialects.sqlite.aiosqlite import dialect as sqlite_dialect

from orchestrator.archive import schema
from orchestrator.archive.record import ArchivedSession
from orchestrator.archive.schema import SCHEMA_VERSION, turns
from orchestrator.archive.store import (
    TURN_COLUMNS,
    ArchiveQuery,
    ArchiveRecordRefused,
    ArchiveStore,
    _positional_insert,
    decode_cursor,
    encode_cursor,
)
from tests.live_server import REPO_ROOT, LiveServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(archive_url: str) -> AsyncIterator[ArchiveStore]:
    archive = ArchiveStore(archive_url)
    await archive.migrate()
    yield archive
    await archive.close()


def record(n: int, **overrides: object) -> ArchivedSession:
    values: dict[str, object] = {
        "id": f"session-{n:04d}",
        "issuer": "key-a" if n % 2 else "key-b",
        "ended_at": 1_000_000.0 + n,
        "end_reason": "terminated" if n % 3 == 0 else "disconnected",
        "created_at": 999_000.0,
        "claims": {"plan": "gold" if n % 5 == 0 else "free", "level": n % 4},
        "transcript": (
            {"role": "user", "text": f"hello {n}", "at": 1.0, "original_length": 70_000},
            {
                "role": "dp",
                "text": "hi",
                "at": 2.0,
                "fallback": True,
                "latency_ms": {"handler_done": 12.5},
            },
        ),
    }
    values.update(overrides)
    return ArchivedSession(**values)  # type: ignore[arg-type]


async def test_migrations_run_once_and_a_second_run_applies_nothing(archive_url: str) -> None:
    archive = ArchiveStore(archive_url)
    try:
        assert await archive.migrate() == list(range(1, SCHEMA_VERSION + 1))
        assert await archive.migrate() == []
    finally:
        await archive.close()


async def test_a_version_1_database_gains_the_turn_latency_column_and_keeps_its_rows(
    archive_url: str,
) -> None:
    archive = ArchiveStore(archive_url)
    try:
        await archive.migrate()
        async with archive.engine.begin() as connection:
            await connection.execute(sa.text("ALTER TABLE archived_turns DROP COLUMN latency"))
            await connection.execute(sa.text("UPDATE archive_schema SET version = 1"))
            await connection.execute(
                sa.insert(schema.sessions).values(
                    id="old",
                    issuer="key-a",
                    created_at=1.0,
                    ended_at=2.0,
                    end_reason="terminated",
                    claims="{}",
                    variables="{}",
                    turns=0,
                    archived_at=2.0,
                )
            )
        assert await archive.migrate() == [2, 3]
        assert (old := await archive.get("old")) is not None and old.end_reason == "terminated"
        assert await archive.write([record(3)]) == 1
        assert await archive.get(record(3).id) == record(3)
    finally:
        await archive.close()


async def test_a_version_2_database_counts_user_turns_and_keeps_the_lines(
    archive_url: str,
) -> None:
    """Version 2's ``turns`` counted transcript lines: it becomes ``lines``, and
    ``turns`` the user's entries."""
    archive = ArchiveStore(archive_url)
    try:
        await archive.migrate()
        assert await archive.write([record(1), record(2)]) == 2
        async with archive.engine.begin() as connection:
            await connection.execute(sa.text("ALTER TABLE archived_sessions DROP COLUMN lines"))
            await connection.execute(sa.text("UPDATE archived_sessions SET turns = 2"))
            await connection.execute(sa.text("UPDATE archive_schema SET version = 2"))
        assert await archive.migrate() == [3]
        page, _ = await archive.page(ArchiveQuery())
        assert [(row["turns"], row["lines"]) for row in page] == [(1, 2), (1, 2)]
    finally:
        await archive.close()


async def test_a_record_reads_back_as_it_was_written(store: ArchiveStore) -> None:
    written = record(7, variables={"topic": "billing"}, dp_session_id="dp-1", persona_id="1")
    assert await store.write([written]) == 1
    assert await store.get(written.id) == written
    assert await store.get("unknown") is None


@pytest.mark.parametrize("at", ["noon", None])
async def test_a_transcript_line_no_column_takes_is_refused_not_retried(
    store: ArchiveStore, at: object
) -> None:
    """The record itself is wrong (the writer sets it aside), the database is not down."""
    broken = record(8, transcript=({"role": "user", "text": "hi", "at": at},))
    with pytest.raises(ArchiveRecordRefused, match="transcript line"):
        await store.write([broken])
    assert await store.get(broken.id) is None  # nothing of it was kept


async def test_writing_a_session_twice_keeps_one_row_with_the_latest_end(
    store: ArchiveStore,
) -> None:
    first = record(1)
    later = record(
        1, ended_at=first.ended_at + 60, transcript=(*first.transcript, first.transcript[0])
    )
    assert await store.write([first]) == 1
    assert await store.write([later]) == 1
    assert await store.write([first]) == 0  # a late retry of the older end changes nothing
    assert await store.count() == 1
    stored = await store.get(first.id)
    assert stored is not None and len(stored.transcript) == 3


async def test_the_list_is_newest_first_and_pages_by_cursor(store: ArchiveStore) -> None:
    await store.write([record(n) for n in range(25)])
    seen: list[str] = []
    query = ArchiveQuery(limit=10)
    while True:
        page, cursor = await store.page(query)
        seen += [row["id"] for row in page]
        if cursor is None:
            break
        query = ArchiveQuery(limit=10, cursor=decode_cursor(encode_cursor(cursor)))
    assert seen == [f"session-{n:04d}" for n in reversed(range(25))]


async def test_filters_by_time_issuer_claim_and_end_reason(store: ArchiveStore) -> None:
    await store.write([record(n) for n in range(30)])

    async def ids(**filters: object) -> set[int]:
        page, _ = await store.page(ArchiveQuery(limit=100, **filters))  # type: ignore[arg-type]
        return {int(row["id"].split("-")[1]) for row in page}

    assert await ids(since=1_000_010.0, until=1_000_013.0) == {10, 11, 12}
    assert await ids(issuer="key-a") == {n for n in range(30) if n % 2}
    assert await ids(claim=("plan", "gold")) == {0, 5, 10, 15, 20, 25}
    assert await ids(claim=("level", "3")) == {n for n in range(30) if n % 4 == 3}
    assert await ids(end_reason="terminated", issuer="key-b") == {0, 6, 12, 18, 24}


async def test_delete_and_purge_forget_sessions_and_their_transcripts(
    store: ArchiveStore,
) -> None:
    await store.write([record(n) for n in range(10)])
    assert await store.delete("session-0003") is True
    assert await store.delete("session-0003") is False
    assert await store.purge(1_000_005.0) == 4  # 0, 1, 2, 4
    assert await store.count() == 5
    page, _ = await store.page(ArchiveQuery(claim=("plan", "gold")))
    assert [row["id"] for row in page] == ["session-0005"]
    assert await store.get("session-0000") is None


async def test_export_reads_every_page_with_transcripts(store: ArchiveStore) -> None:
    await store.write([record(n) for n in range(230)])
    exported = [r async for r in store.export(ArchiveQuery(since=1_000_010.0))]
    assert [r.id for r in exported] == [f"session-{n:04d}" for n in reversed(range(10, 230))]
    assert all(len(r.transcript) == 2 for r in exported)


@pytest.mark.parametrize(
    "dialect", [sqlite_dialect(), asyncpg_dialect()], ids=["sqlite", "asyncpg"]
)
def test_the_transcript_insert_takes_its_values_in_the_rows_order(dialect: sa.Dialect) -> None:
    """Rows go to the driver as tuples: the statement's parameters must be in their order,
    else building the store fails (rather than storing texts as roles)."""
    statement = _positional_insert(turns, TURN_COLUMNS, dialect)
    assert statement.startswith(f"INSERT INTO archived_turns ({', '.join(TURN_COLUMNS)})")
    with pytest.raises(RuntimeError, match="not"):
        _positional_insert(turns, tuple(reversed(TURN_COLUMNS)), dialect)


@pytest.mark.server
def test_the_server_creates_its_default_archive_private_and_in_one_place(tmp_path: Path) -> None:
    """``orchestrator serve`` with no ARCHIVE_URL: the per-user file, 0600 in a 0700
    directory (SQLite made it 0644 under the usual umask), nothing in the working
    directory."""
    data = tmp_path / "data"
    with LiveServer({"ARCHIVE_URL": "", "XDG_DATA_HOME": str(data)}) as live:
        assert httpx.get(live.base_url + "/healthz").status_code == 200
        archive = data / "dp-orchestration-companion" / "archive.db"
        deadline = time.monotonic() + 10
        while not archive.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert archive.stat().st_mode & 0o777 == 0o600
    assert archive.parent.stat().st_mode & 0o777 == 0o700
    assert not (REPO_ROOT / "orchestrator.db").exists()
