"""The archive store: one SQLAlchemy Core code path over aiosqlite and asyncpg.

Writes are idempotent upserts keyed by session id: a record replaces the
stored one only when it ended at the same time or later, so a retried or
late write never undoes a newer end (a host that reconnected and ended
again), and several instances writing the same session leave one row.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from orchestrator.archive import schema
from orchestrator.archive.record import MAX_ID, ArchivedSession, claim_text
from orchestrator.archive.schema import claims, sessions, turns
from orchestrator.logs import error_reason
from tokens.jsonsafe import refuse_constant

MAX_PAGE = 100
CONNECT_TIMEOUT_SECONDS = 5.0
Cursor = tuple[float, str]  # (ended_at, id) of the last row of a page


class ArchiveUnavailable(Exception):
    """The archive database cannot be reached (or refused the statement).

    ``str()``: the target and the driver's reason, for the log and the CLI;
    ``kind``: the exception's class alone, for HTTP answers (no host, no path)."""

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind or message


class ArchiveMissing(ArchiveUnavailable):
    """A SQLite archive that was only to be read does not exist (it is not created)."""


class ArchiveRecordRefused(Exception):
    """The database refused the data itself (a value its types cannot hold); retrying the
    same records cannot succeed, and the database is not unavailable."""


# SQLSTATE classes about the data, not the connection: data exception, integrity
# violation (asyncpg's errors reach SQLAlchemy as a plain ``DBAPIError`` with the code).
DATA_SQLSTATE_CLASSES = ("22", "23")


@dataclass(frozen=True)
class ArchiveQuery:
    """A page of the list, newest first: ended in ``[since, until)``, and the filters."""

    since: float | None = None
    until: float | None = None
    issuer: str | None = None
    claim: tuple[str, str] | None = None  # (name, value as ``claim_text`` gives it)
    end_reason: str | None = None
    limit: int = 20
    cursor: Cursor | None = None


def encode_cursor(cursor: Cursor) -> str:
    raw = json.dumps([cursor[0], cursor[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """``ValueError`` for anything ``encode_cursor`` did not make."""
    try:
        value = json.loads(
            base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), parse_constant=refuse_constant
        )
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        raise ValueError("not a cursor this server gave") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], int | float)
        or isinstance(value[0], bool)
        or not math.isfinite(value[0])
        or not _storable_id(value[1])
    ):
        raise ValueError("not a cursor this server gave")
    return float(value[0]), value[1]


def _storable_id(value: Any) -> bool:
    """A session id as the archive stores it: UTF-8 text without NUL, within its column."""
    if not isinstance(value, str) or "\x00" in value or len(value) > MAX_ID:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


@contextmanager
def _reachable(target: str) -> Iterator[None]:
    try:
        yield
    except sa.exc.StatementError as exc:
        if _about_the_data(exc):
            raise ArchiveRecordRefused(f"{type(exc).__name__}: {exc.orig}") from exc
        raise _unavailable(target, exc) from exc
    except (sa.exc.SQLAlchemyError, OSError, TimeoutError) as exc:
        raise _unavailable(target, exc) from exc


def _unavailable(target: str, exc: Exception) -> ArchiveUnavailable:
    """``<target>: <driver's exception>: <its message>`` (refused, no such database, DNS)."""
    return ArchiveUnavailable(f"{target}: {error_reason(exc)}", kind=type(exc).__name__)


def _prepare_file(path: Path) -> None:
    """Create a SQLite archive's directory (0700) and file (0600) before SQLite does
    (it would create the file world-readable under a usual umask). An existing file
    keeps its mode; a failure is left for the connection to report."""
    with suppress(OSError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _read_only_url(path: Path) -> str:
    """SQLite's URI form that opens ``path`` read-only and never creates it."""
    return f"sqlite+aiosqlite:///file:{quote(str(path))}?mode=ro&uri=true"


def _about_the_data(exc: sa.exc.StatementError) -> bool:
    """Whether the statement failed on its values (it would again), not on the database."""
    if isinstance(exc, sa.exc.DataError | sa.exc.IntegrityError):
        return True
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return False
        code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        return isinstance(code, str) and code[:2] in DATA_SQLSTATE_CLASSES
    return isinstance(exc.orig, ValueError | TypeError)  # a value no bind parameter takes


class ArchiveStore:
    """The archive database. ``read_only``: a SQLite file is opened read-only and
    never created (``ArchiveMissing`` when it does not exist); otherwise its
    directory and file are created private (0700, 0600)."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        driver_url = schema.async_url(url)
        self.target = schema.shown_target(url)
        path = schema.sqlite_file(url)
        if path is not None and read_only:
            if not path.is_file():
                raise ArchiveMissing(
                    f"{self.target}: no such file (nothing was archived there; "
                    "ARCHIVE_URL names the archive)"
                )
            driver_url = _read_only_url(path)
        # Created private on first use (not here: an app built and never started
        # leaves no file).
        self._unprepared = None if read_only else path
        connect_args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT_SECONDS}
        self.engine = create_async_engine(driver_url, pool_pre_ping=True, connect_args=connect_args)
        self.dialect = self.engine.dialect.name
        self._insert_turns = _positional_insert(turns, TURN_COLUMNS, self.engine.dialect)

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        if self._unprepared is not None:
            _prepare_file(self._unprepared)
            self._unprepared = None
        with _reachable(self.target):
            async with self.engine.begin() as connection:
                yield connection

    async def migrate(self) -> list[int]:
        """Bring the schema to ``SCHEMA_VERSION``; the versions applied."""
        async with self._transaction() as connection:
            return await connection.run_sync(schema.migrate)

    async def ping(self) -> None:
        async with self._transaction() as connection:
            await connection.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()

    # --- writing -----------------------------------------------------------------------

    async def write(self, records: Sequence[ArchivedSession]) -> int:
        """Upsert ``records`` in one transaction; how many were stored (not older than
        what the archive held)."""
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        now = time.time()
        newest = _newest_per_id(records)
        async with self._transaction() as connection:
            stored = set(await _upsert(connection, insert, newest, now)) if newest else set()
            changed = [record for record in newest if record.id in stored]
            ids = [record.id for record in changed]
            if not ids:
                return 0
            await connection.execute(sa.delete(claims).where(claims.c.session_id.in_(ids)))
            await connection.execute(sa.delete(turns).where(turns.c.session_id.in_(ids)))
            claim_rows = [
                {"session_id": r.id, "name": name, "value": claim_text(value)}
                for r in changed
                for name, value in r.claims.items()
            ]
            if claim_rows:
                await connection.execute(sa.insert(claims), claim_rows)
            turn_rows = _turn_rows(changed)
            if turn_rows:
                # Straight to the driver's executemany: SQLAlchemy's handling of each
                # row's parameters cost more of the event loop than the insert itself.
                await connection.exec_driver_sql(self._insert_turns, turn_rows)
            return len(changed)

    # --- reading -----------------------------------------------------------------------

    async def get(self, session_id: str) -> ArchivedSession | None:
        async with self._transaction() as connection:
            row = (
                await connection.execute(sa.select(sessions).where(sessions.c.id == session_id))
            ).first()
            if row is None:
                return None
            return (await _records(connection, [row]))[0]

    async def page(self, query: ArchiveQuery) -> tuple[list[dict[str, Any]], Cursor | None]:
        """One page of summaries, newest first, and the cursor of the next (``None``: last)."""
        limit = max(1, min(query.limit, MAX_PAGE))
        async with self._transaction() as connection:
            rows = (await connection.execute(_page_statement(query, limit + 1))).all()
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more else None
        return [_summary(row) for row in rows], (last.ended_at, last.id) if last else None

    async def export(self, query: ArchiveQuery) -> AsyncIterator[ArchivedSession]:
        """Every record the query matches (all pages, with transcripts), newest first."""
        query = replace(query, limit=MAX_PAGE)
        while True:
            async with self._transaction() as connection:
                rows = (await connection.execute(_page_statement(query, MAX_PAGE))).all()
                records = await _records(connection, rows)
            for record in records:
                yield record
            if len(rows) < MAX_PAGE:
                return
            query = replace(query, cursor=(rows[-1].ended_at, rows[-1].id))

    async def count(self) -> int:
        async with self._transaction() as connection:
            total = await connection.execute(sa.select(sa.func.count()).select_from(sessions))
            return int(total.scalar() or 0)

    # --- erasure -----------------------------------------------------------------------

    async def delete(self, session_id: str) -> bool:
        async with self._transaction() as connection:
            return await _delete(connection, sessions.c.id == session_id) > 0

    async def purge(self, ended_before: float) -> int:
        """Forget every session that ended before ``ended_before``; how many."""
        async with self._transaction() as connection:
            return await _delete(connection, sessions.c.ended_at < ended_before)


def _newest_per_id(records: Sequence[ArchivedSession]) -> list[ArchivedSession]:
    newest: dict[str, ArchivedSession] = {}
    for record in records:
        kept = newest.get(record.id)
        if kept is None or record.ended_at >= kept.ended_at:
            newest[record.id] = record
    return list(newest.values())


async def _upsert(
    connection: AsyncConnection, insert: Any, records: Sequence[ArchivedSession], now: float
) -> list[str]:
    """``records`` (distinct ids) in one executemany; the ids it stored, leaving any
    the archive holds a later end of."""
    rows = [
        {
            "id": record.id,
            "issuer": record.issuer,
            "dp_session_id": record.dp_session_id,
            "persona_id": record.persona_id,
            "created_at": record.created_at,
            "connected_at": record.connected_at,
            "ended_at": record.ended_at,
            "end_reason": record.end_reason,
            "claims": json.dumps(record.claims),
            "variables": json.dumps(record.variables),
            "turns": record.turns,
            "lines": len(record.transcript),
            "archived_at": now,
        }
        for record in records
    ]
    # One statement, compiled once and cached; SQLAlchemy sends the rows as
    # multi-row VALUES batches (insertmanyvalues), RETURNING what each stored.
    statement = insert(sessions)
    statement = statement.on_conflict_do_update(
        index_elements=[sessions.c.id],
        set_={name: statement.excluded[name] for name in rows[0] if name != "id"},
        where=sessions.c.ended_at <= statement.excluded.ended_at,
    ).returning(sessions.c.id)
    return list((await connection.execute(statement, rows)).scalars())


# The transcript row's columns, in the order of ``_turn_row``'s values.
TURN_COLUMNS = ("session_id", "seq", "at", "role", "text", "fallback", "original_length", "latency")


def _turn_row(session_id: str, seq: int, turn: dict[str, Any]) -> tuple[Any, ...]:
    latency = turn.get("latency_ms")
    return (
        session_id,
        seq,
        float(turn["at"]),
        turn["role"],
        turn["text"],
        bool(turn.get("fallback", False)),
        turn.get("original_length"),
        json.dumps(latency) if latency else None,
    )


def _turn_rows(records: Sequence[ArchivedSession]) -> list[tuple[Any, ...]]:
    """The records' transcript rows; ``ArchiveRecordRefused`` for a line whose values
    no column takes (as SQLAlchemy's parameter handling refused them before)."""
    try:
        return [
            _turn_row(r.id, seq, turn) for r in records for seq, turn in enumerate(r.transcript)
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise ArchiveRecordRefused(f"transcript line: {type(exc).__name__}: {exc}") from exc


def _positional_insert(table: sa.Table, columns: Sequence[str], dialect: sa.Dialect) -> str:
    """``INSERT INTO table (columns) VALUES (...)`` in ``dialect``'s positional
    parameter style, for rows given as tuples in the order of ``columns``."""
    compiled = sa.insert(table).compile(dialect=dialect, column_keys=list(columns))
    if not compiled.positional or list(compiled.positiontup or ()) != list(columns):
        raise RuntimeError(f"{dialect.name}: the insert's parameters are not {columns} in order")
    return str(compiled)


def _page_statement(query: ArchiveQuery, limit: int) -> sa.Select[Any]:
    statement = sa.select(sessions)
    if query.since is not None:
        statement = statement.where(sessions.c.ended_at >= query.since)
    if query.until is not None:
        statement = statement.where(sessions.c.ended_at < query.until)
    if query.issuer is not None:
        statement = statement.where(sessions.c.issuer == query.issuer)
    if query.end_reason is not None:
        statement = statement.where(sessions.c.end_reason == query.end_reason)
    if query.claim is not None:
        name, value = query.claim
        statement = statement.where(
            sa.exists().where(
                claims.c.session_id == sessions.c.id,
                claims.c.name == name,
                claims.c.value == value,
            )
        )
    if query.cursor is not None:
        statement = statement.where(
            sa.tuple_(sessions.c.ended_at, sessions.c.id) < sa.tuple_(*query.cursor)
        )
    return statement.order_by(sessions.c.ended_at.desc(), sessions.c.id.desc()).limit(limit)


def _summary(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "issuer": row.issuer,
        "dp_session_id": row.dp_session_id,
        "persona_id": row.persona_id,
        "created_at": row.created_at,
        "connected_at": row.connected_at,
        "ended_at": row.ended_at,
        "end_reason": row.end_reason,
        "claims": json.loads(row.claims),
        "variables": json.loads(row.variables),
        "turns": row.turns,
        "lines": row.lines,
    }


async def _records(
    connection: AsyncConnection, rows: Sequence[sa.Row[Any]]
) -> list[ArchivedSession]:
    """Full records for session rows, their transcripts read in one statement."""
    ids = [row.id for row in rows]
    transcripts: dict[str, list[dict[str, Any]]] = {session_id: [] for session_id in ids}
    if ids:
        entries = await connection.execute(
            sa.select(turns)
            .where(turns.c.session_id.in_(ids))
            .order_by(turns.c.session_id, turns.c.seq)
        )
        for entry in entries:
            turn: dict[str, Any] = {"role": entry.role, "text": entry.text, "at": entry.at}
            if entry.fallback:
                turn["fallback"] = True
            if entry.original_length is not None:
                turn["original_length"] = entry.original_length
            if entry.latency is not None:
                turn["latency_ms"] = json.loads(entry.latency)
            transcripts[entry.session_id].append(turn)
    return [
        ArchivedSession.from_dict({**_summary(row), "transcript": transcripts[row.id]})
        for row in rows
    ]


async def _delete(connection: AsyncConnection, condition: sa.ColumnElement[bool]) -> int:
    doomed = sa.select(sessions.c.id).where(condition).scalar_subquery()
    await connection.execute(sa.delete(turns).where(turns.c.session_id.in_(doomed)))
    await connection.execute(sa.delete(claims).where(claims.c.session_id.in_(doomed)))
    result = await connection.execute(sa.delete(sessions).where(condition))
    return int(result.rowcount or 0)
