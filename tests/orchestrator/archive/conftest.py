"""The archive suite runs on SQLite and on a real PostgreSQL (a throwaway cluster)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres_server import RestartablePostgres, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[RestartablePostgres]:
    """One cluster for the session (skipped without PostgreSQL, unless REQUIRE_POSTGRES=1)."""
    with postgres_server() as server:
        yield server


def fresh_database(server: RestartablePostgres) -> str:
    return server.create_database(f"archive_{secrets.token_hex(6)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty archive database: a SQLite file, or a new database on the cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'archive.db'}"
    server: RestartablePostgres = request.getfixturevalue("postgres")
    return fresh_database(server)
