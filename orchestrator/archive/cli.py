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
from collections.abc import AsyncIterator, Callable

from orchestrator.archive.http import parse_time
from orchestrator.archive.record import END_REASONS, ArchivedSession
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
    add_query_arguments(export)
    export.set_defaults(func=lambda args: _run(settings, _export, args))


def add_query_arguments(parser: argparse.ArgumentParser, *, limit: int | None = None) -> None:
    """The filters that select archived sessions (``export``, ``replay``); ``limit``:
    the default of ``--limit`` (``None``: every match)."""
    parser.add_argument("--since", type=_time, help="ended at or after (Unix seconds or ISO 8601)")
    parser.add_argument("--until", type=_time, help="ended before (Unix seconds or ISO 8601)")
    parser.add_argument("--issuer", help="only sessions of this key name")
    parser.add_argument(
        "--claim", type=_claim, metavar="NAME:VALUE", help="only sessions with this claim"
    )
    parser.add_argument("--end-reason", choices=END_REASONS, help="only sessions that ended so")
    parser.add_argument(
        "--limit",
        type=_positive,
        default=limit,
        help="at most this many sessions, newest first"
        + (f" (default {limit})" if limit is not None else " (default: all)"),
    )


def query_of(args: argparse.Namespace) -> ArchiveQuery:
    """The ``ArchiveQuery`` of ``add_query_arguments``' options (``--limit`` aside)."""
    return ArchiveQuery(
        since=args.since,
        until=args.until,
        issuer=args.issuer,
        claim=args.claim,
        end_reason=args.end_reason,
    )


async def selected(store: ArchiveStore, args: argparse.Namespace) -> AsyncIterator[ArchivedSession]:
    """The sessions ``add_query_arguments``' options select, newest first."""
    count = 0
    async for record in store.export(query_of(args)):
        yield record
        count += 1
        if args.limit is not None and count >= args.limit:
            return


def _claim(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError("must be NAME:VALUE")
    return name, value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number of 1 or more")
    return int(text)


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
    async for record in selected(store, args):
        sys.stdout.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
    return 0
