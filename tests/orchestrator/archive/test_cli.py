"""``orchestrator archive migrate|show|export`` against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from orchestrator.archive.schema import SCHEMA_VERSION
from orchestrator.archive.store import ArchiveStore
from orchestrator.cli import main
from tests.orchestrator.archive.test_store import record


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


def test_the_commands_say_so_when_the_archive_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ARCHIVE_URL", "none")
    assert main(["archive", "export"]) == 2
    assert "ARCHIVE_URL" in capsys.readouterr().err
