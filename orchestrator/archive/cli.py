"""``orchestrator archive``: migrate the schema, show one session, export to JSONL.

``show`` and ``export`` only read: a SQLite archive is opened read-only and
never created. Exit status: 0 done, 1 no such session (``show``), 2 the
archive is off or ``ARCHIVE_URL`` is malformed, 3 the archive cannot be read
(the database is unreachable, or the SQLite file does not exist); the reason,
naming the database without credentials, goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable

from orchestrator.archive.http import parse_time
from orchestrator.archive.store import ArchiveQuery, ArchiveStore, ArchiveUnavailable
from orchestrator.config import Settings
from orchestrator.logs import Redactor

EXIT_NOT_FOUND = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3


def add_archive_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    settings: Callable[[], Settings],
) -> None:
    archive = sub.add_parser("archive", help="the transcript archive (ARCHIVE_URL)")
    archive_sub = archive.add_subparsers(dest="archive_command", required=True)
    migrate = archive_sub.add_parser("migrate", help="bring the archive's schema up to date")
    migrate.set_defaults(func=lambda args: _run(settings, _migrate, args, read_only=False))
    show = archive_sub.add_parser("show", help="print one archived session as JSON")
    show.add_argument("session_id")
    show.set_defaults(func=lambda args: _run(settings, _show, args))
    export = archive_sub.add_parser(
        "export", help="print archived sessions (with transcripts) as JSON lines, newest first"
    )
    export.add_argument("--since", type=_time, help="ended at or after (Unix seconds or ISO 8601)")
    export.add_argument("--until", type=_time, help="ended before (Unix seconds or ISO 8601)")
    export.add_argument("--issuer", help="only sessions of this key name")
    export.set_defaults(func=lambda args: _run(settings, _export, args))


def _time(text: str) -> float:
    try:
        return parse_time("time", text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run(
    settings: Callable[[], Settings],
    command: Callable[..., object],
    args: object,
    *,
    read_only: bool = True,
) -> int:
    current = settings()
    url = current.archive_url
    if url is None:
        print("the archive is off: set ARCHIVE_URL", file=sys.stderr)
        return EXIT_CONFIG
    redact = Redactor(current.secrets)

    async def run() -> int:
        try:
            store = ArchiveStore(url, read_only=read_only)
        except ArchiveUnavailable as exc:
            print(redact(f"archive database unavailable: {exc}"), file=sys.stderr)
            return EXIT_UNAVAILABLE
        try:
            result: int = await command(store, args)  # type: ignore[misc]
            return result
        except ArchiveUnavailable as exc:
            print(redact(f"archive database unreachable: {exc}"), file=sys.stderr)
            return EXIT_UNAVAILABLE
        finally:
            await store.close()

    return asyncio.run(run())


async def _migrate(store: ArchiveStore, _args: argparse.Namespace) -> int:
    applied = await store.migrate()
    print(f"migrated to version {applied[-1]}" if applied else "schema up to date")
    return 0


async def _show(store: ArchiveStore, args: argparse.Namespace) -> int:
    record = await store.get(args.session_id)
    if record is None:
        print(f"no archived session {args.session_id!r}", file=sys.stderr)
        return EXIT_NOT_FOUND
    print(json.dumps(record.to_dict(), indent=2, ensure_ascii=False))
    return 0


async def _export(store: ArchiveStore, args: argparse.Namespace) -> int:
    query = ArchiveQuery(since=args.since, until=args.until, issuer=args.issuer)
    async for record in store.export(query):
        sys.stdout.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
    return 0
