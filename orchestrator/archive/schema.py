"""The archive's tables, its schema version and the migrations that reach it.

One schema for SQLite and PostgreSQL (SQLAlchemy Core types). Sessions,
their kept claims (one row per claim, so a claim filter uses an index on
either database) and their transcript entries (one row per entry). Each
migration runs once, in order, in one transaction; PostgreSQL instances
starting together serialise on an advisory lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError

SCHEMA_VERSION = 3
# Any fixed number: the lock PostgreSQL instances take while migrating.
MIGRATION_LOCK = 0x0A5C_1F16

metadata = sa.MetaData()
TIME = sa.Float(53)  # seconds since the epoch, as the session model keeps them

schema_version = sa.Table(
    "archive_schema", metadata, sa.Column("version", sa.Integer, nullable=False)
)

sessions = sa.Table(
    "archived_sessions",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("issuer", sa.String(256), nullable=False),
    sa.Column("dp_session_id", sa.String(1024)),
    sa.Column("persona_id", sa.String(256)),
    sa.Column("created_at", TIME, nullable=False),
    sa.Column("connected_at", TIME),
    sa.Column("ended_at", TIME, nullable=False),
    sa.Column("end_reason", sa.String(32), nullable=False),
    sa.Column("claims", sa.Text, nullable=False),  # JSON
    sa.Column("variables", sa.Text, nullable=False),  # JSON
    # What the user said (version 2 and before: transcript entries, now ``lines``).
    sa.Column("turns", sa.Integer, nullable=False),
    sa.Column("archived_at", TIME, nullable=False),
    sa.Column("lines", sa.Integer),  # transcript entries (version 3)
    # Newest first, then by id: the list's order and its cursor.
    sa.Index("archived_sessions_ended", "ended_at", "id"),
    sa.Index("archived_sessions_issuer", "issuer", "ended_at", "id"),
    sa.Index("archived_sessions_reason", "end_reason", "ended_at", "id"),
)

claims = sa.Table(
    "archived_claims",
    metadata,
    sa.Column("session_id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(256), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),  # strings as they are, else JSON
    sa.Index("archived_claims_value", "name", "value", "session_id"),
)

turns = sa.Table(
    "archived_turns",
    metadata,
    sa.Column("session_id", sa.String(128), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("at", TIME, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("fallback", sa.Boolean, nullable=False),
    sa.Column("original_length", sa.Integer),
    sa.Column("latency_ms", sa.Float),  # version 1's, never written: latency has stages
    sa.Column("latency", sa.Text),  # JSON: {stage: milliseconds}, as the session keeps it
)


def _create_v1(connection: Connection) -> None:
    metadata.create_all(connection, tables=[sessions, claims, turns])


def _add_turn_latency_v2(connection: Connection) -> None:
    """A reply's latency is a dict of stages; version 1 had a number for it."""
    columns = {column["name"] for column in sa.inspect(connection).get_columns(turns.name)}
    if "latency" not in columns:  # a database created at version 1
        connection.execute(sa.text(f"ALTER TABLE {turns.name} ADD COLUMN latency TEXT"))


def _count_user_turns_v3(connection: Connection) -> None:
    """``turns`` counted transcript entries; it counts the user's turns, ``lines`` the
    entries. Older records get the user entries their transcript kept."""
    columns = {column["name"] for column in sa.inspect(connection).get_columns(sessions.name)}
    if "lines" not in columns:  # a database created before version 3
        connection.execute(sa.text(f"ALTER TABLE {sessions.name} ADD COLUMN lines INTEGER"))
    user_turns = (
        sa.select(sa.func.count())
        .where(turns.c.session_id == sessions.c.id, turns.c.role == "user")
        .scalar_subquery()
    )
    connection.execute(
        sa.update(sessions)
        .where(sessions.c.lines.is_(None))
        .values(lines=sessions.c.turns, turns=user_turns)
    )


# version -> the step that reaches it from the one before.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {
    1: _create_v1,
    2: _add_turn_latency_v2,
    3: _count_user_turns_v3,
}


def current_version(connection: Connection) -> int:
    if not sa.inspect(connection).has_table(schema_version.name):
        return 0
    return int(connection.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)


def migrate(connection: Connection) -> list[int]:
    """Apply the pending migrations inside the caller's transaction; the versions applied."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK})
    schema_version.create(connection, checkfirst=True)
    version = current_version(connection)
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"the archive's schema is version {version}, newer than this server's "
            f"{SCHEMA_VERSION}: upgrade the server"
        )
    applied = []
    for target in range(version + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[target](connection)
        connection.execute(sa.delete(schema_version))
        connection.execute(sa.insert(schema_version).values(version=target))
        applied.append(target)
    return applied


ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def async_url(url: str) -> str:
    """``ARCHIVE_URL`` with the async driver named: ``sqlite://`` -> aiosqlite,
    ``postgresql://`` (or ``postgres://``) -> asyncpg; ``ValueError`` otherwise."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError("use sqlite:///path.db or postgresql://user@host/db") from None
    driver = ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ValueError(f"{parsed.drivername!r}: use sqlite:///path.db or postgresql://...")
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


DATA_DIRECTORY_NAME = "dp-orchestration-companion"
DEFAULT_FILE_NAME = "archive.db"


def default_archive_path(env: Mapping[str, str]) -> Path:
    """The development archive, the same whatever the working directory:
    ``$XDG_DATA_HOME/dp-orchestration-companion/archive.db``, ``$XDG_DATA_HOME``
    defaulting to ``$HOME/.local/share`` (the XDG base directory rule: a relative
    ``XDG_DATA_HOME`` is ignored)."""
    base = env.get("XDG_DATA_HOME", "")
    if base and Path(base).is_absolute():
        root = Path(base)
    else:
        home = env.get("HOME", "")
        root = (Path(home) if home else Path.home()) / ".local" / "share"
    return root / DATA_DIRECTORY_NAME / DEFAULT_FILE_NAME


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite ``ARCHIVE_URL``; ``None`` for PostgreSQL or ``:memory:``."""
    parsed = make_url(async_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def shown_target(url: str) -> str:
    """The archive's database as a log line or an error names it: the SQLite file, or
    ``host:port/database`` (no user, no password, no query)."""
    try:
        parsed: URL = make_url(async_url(url))
    except ValueError:
        return "(malformed ARCHIVE_URL)"
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite file {parsed.database or ':memory:'}"
    port = f":{parsed.port}" if parsed.port else ""
    return f"postgresql {parsed.host or 'localhost'}{port}/{parsed.database or ''}"
