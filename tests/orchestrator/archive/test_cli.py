"""``orchestrator archive migrate|show|export`` against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from orchestrator.archive.schema import SCHEMA_VERSION
from orchestrator.archive.store import ArchiveStore
from orchestrator.cli import main
from tests.conftest import random_secret
from tests.live_server import free_port
from tests.orchestrator.archive.test_store import record
from tests.postgres_server import RestartablePostgres


def write(url: str, count: int) -> None:
    async def run() -> None:
        store = ArchiveStore(url)
        await store.migrate()
        await store.write([record(n) for n in range(count)])
        await store.close()

    asyncio.run(run())


def test_migrate_show_and_export_read_the_configured_archive(
    archive_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARCHIVE_URL", archive_url)
    assert main(["archive", "migrate"]) == 0
    assert f"migrated to version {SCHEMA_VERSION}" in capsys.readouterr().out
    assert main(["archive", "migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    write(archive_url, 12)

    assert main(["archive", "show", "session-0003"]) == 0
    assert json.loads(capsys.readouterr().out)["transcript"][0]["text"] == "hello 3"
    assert main(["archive", "show", "nope"]) == 1

    since, until = "1000005", "1970-01-12T13:46:50+00:00"  # 1_000_005 .. 1_000_010
    assert main(["archive", "export", "--since", since, "--until", until]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [
        f"session-{n:04d}" for n in (9, 8, 7, 6, 5)
    ]


def test_export_takes_the_lists_filters_and_a_limit(
    archive_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--claim, --end-reason and --limit, as ``orchestrator replay`` selects with them."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARCHIVE_URL", archive_url)
    write(archive_url, 12)

    def exported(*args: str) -> list[str]:
        assert main(["archive", "export", *args]) == 0
        return [json.loads(line)["id"][-2:] for line in capsys.readouterr().out.splitlines()]

    assert exported("--claim", "plan:gold") == ["10", "05", "00"]
    assert exported("--claim", "level:3", "--end-reason", "terminated") == ["03"]
    assert exported("--limit", "2") == ["11", "10"]
    with pytest.raises(SystemExit):
        main(["archive", "export", "--claim", "plan"])
    assert "must be NAME:VALUE" in capsys.readouterr().err


def test_the_commands_say_so_when_the_archive_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARCHIVE_URL", "none")
    assert main(["archive", "export"]) == 2
    assert "ARCHIVE_URL" in capsys.readouterr().err


def test_from_another_directory_the_default_archive_is_found_and_never_created_by_a_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No ARCHIVE_URL: every directory reads the one per-user archive; a read of an
    archive that does not exist creates nothing (exit 3, naming the file); migrate
    creates it private (0600 in a 0700 directory)."""
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    monkeypatch.delenv("ARCHIVE_URL", raising=False)
    monkeypatch.chdir(elsewhere)
    expected = data / "dp-orchestration-companion" / "archive.db"
    for command in (["show", "session-0001"], ["export"]):
        assert main(["archive", *command]) == 3
        err = capsys.readouterr().err
        assert f"sqlite file {expected}: no such file" in err
    assert not data.exists()
    assert list(elsewhere.iterdir()) == []

    monkeypatch.chdir(tmp_path)
    assert main(["archive", "migrate"]) == 0
    capsys.readouterr()
    assert expected.stat().st_mode & 0o777 == 0o600
    assert expected.parent.stat().st_mode & 0o777 == 0o700
    write(f"sqlite:///{expected}", 3)
    monkeypatch.chdir(elsewhere)
    assert main(["archive", "show", "session-0001"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "session-0001"
    assert list(elsewhere.iterdir()) == []


def test_an_unreadable_archive_names_its_target_and_the_drivers_reason(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    postgres: RestartablePostgres,
) -> None:
    """Exit 3 with the database (no password) and why: refused, no such database."""
    monkeypatch.chdir(tmp_path)
    password = random_secret()
    port = free_port()
    monkeypatch.setenv("ARCHIVE_URL", f"postgresql://me:{password}@127.0.0.1:{port}/archive")
    assert main(["archive", "export"]) == 3
    err = capsys.readouterr().err
    assert f"postgresql 127.0.0.1:{port}/archive: " in err
    assert "refused" in err.lower() or "connect call failed" in err.lower()
    assert password not in err

    missing = postgres.url("no_such_archive")
    monkeypatch.setenv("ARCHIVE_URL", missing)
    assert main(["archive", "show", "x"]) == 3
    err = capsys.readouterr().err
    assert '/no_such_archive: InvalidCatalogNameError: database "no_such_archive" does not' in err
