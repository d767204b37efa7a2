"""``orchestrator replay``: archived sessions through a candidate handler, compared
with production (or ``--against`` another handler); exit 0 (nothing differs),
1 (something does) or 2 (an error: the archive off or not answering, a handler
that does not import, a session that is not there), with one line for the
last and no traceback."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from orchestrator.config import Settings

if TYPE_CHECKING:
    from orchestrator.archive.record import ArchivedSession
    from orchestrator.testing.judge import Judge
    from orchestrator.testing.replay import Replayer

EXIT_SAME = 0
EXIT_DIFFERS = 1
EXIT_ERROR = 2
FILTERS = ("since", "until", "issuer", "claim", "end_reason")
DEFAULT_LIMIT = 100


class ReplayError(Exception):
    """Replay cannot run; the message is the one line the command prints."""


def add_replay_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    settings: Callable[[], Settings],
) -> None:
    from orchestrator.archive.cli import add_query_arguments

    replay = sub.add_parser(
        "replay",
        help="replay archived sessions through a handler and show what now answers differently",
        description="Replay archived sessions (docs/testing.md#replaying-real-conversations).",
    )
    replay.add_argument("--archive-url", help="the archive to read (default: ARCHIVE_URL)")
    add_query_arguments(replay, limit=DEFAULT_LIMIT)
    replay.add_argument(
        "--session",
        action="append",
        default=[],
        metavar="ID",
        help="replay this archived session (repeatable; instead of the filters)",
    )
    replay.add_argument(
        "--handler",
        help="the candidate handler: default, webhook, llm or module:callable "
        "(default: CONVERSATION_HANDLER)",
    )
    replay.add_argument(
        "--against",
        metavar="SPEC",
        help="compare with this handler's answers instead of production's (A/B)",
    )
    replay.add_argument(
        "--judge",
        action="store_true",
        help="ask the JUDGE_* model whether each changed text still means the same",
    )
    replay.add_argument(
        "--save-scenarios", metavar="DIR", help="write the sessions as scenario files here"
    )
    replay.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    replay.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML")
    replay.set_defaults(func=lambda args: run_command(args, settings))


def run_command(
    args: argparse.Namespace, settings: Callable[[], Settings], out: TextIO | None = None
) -> int:
    from orchestrator.logs import Redactor, configure_logging

    out = sys.stdout if out is None else out
    loaded = settings()  # exits 2 itself on a configuration error
    configure_logging(json=False, level="warning", secrets=loaded.secrets)
    redact = Redactor(loaded.secrets)
    try:
        return asyncio.run(_run(args, loaded, out))
    except ReplayError as exc:
        print(redact(f"error: {exc}"), file=sys.stderr)
        return EXIT_ERROR


async def _run(args: argparse.Namespace, settings: Settings, out: TextIO) -> int:
    from orchestrator.config import SettingsError
    from orchestrator.control.options import ControlOptions
    from orchestrator.handlers.loader import HandlerLoadError, load_handler
    from orchestrator.testing.engine import close_options
    from orchestrator.testing.replay import Replayer

    if args.session and any(getattr(args, name) is not None for name in FILTERS):
        raise ReplayError("--session replays the sessions named: drop the filters")
    records = await _read(args, settings)
    loaded: list[ControlOptions] = []
    judge: Judge | None = None
    try:
        try:
            candidate = load_handler(args.handler or settings.conversation_handler, settings)
            loaded.append(ControlOptions.from_settings(settings, candidate))
            baseline = None
            if args.against:
                other = load_handler(args.against, settings)
                baseline = ControlOptions.from_settings(settings, other)
                loaded.append(baseline)
        except (HandlerLoadError, SettingsError) as exc:
            raise ReplayError(str(exc)) from None
        if args.judge:
            if not settings.judge_model:
                raise ReplayError("--judge: set JUDGE_MODEL (and JUDGE_BASE_URL, JUDGE_API_KEY)")
            from orchestrator.testing.judge import Judge  # openai: only for --judge

            judge = Judge.from_settings(settings)
        replayer = Replayer(loaded[0], baseline=baseline, judge=judge)
        return await _replay(args, replayer, records, out)
    finally:
        for options in loaded:
            await close_options(options)
        if judge is not None:
            await judge.aclose()


async def _read(args: argparse.Namespace, settings: Settings) -> list[ArchivedSession]:
    """The selected sessions, read whole before anything runs (``ReplayError`` when the
    archive is off, does not answer, or lacks a ``--session``)."""
    from orchestrator.archive.cli import selected
    from orchestrator.archive.schema import async_url
    from orchestrator.archive.store import ArchiveStore, ArchiveUnavailable

    url = args.archive_url or settings.archive_url
    if url is None:
        raise ReplayError("the archive is off: set ARCHIVE_URL or pass --archive-url")
    try:
        async_url(url)
    except ValueError as exc:
        raise ReplayError(f"--archive-url: {exc}") from None
    try:
        store = ArchiveStore(url, read_only=True)
    except ArchiveUnavailable as exc:
        raise ReplayError(f"archive database unavailable: {exc}") from None
    try:
        if not args.session:
            return [record async for record in selected(store, args)]
        records = []
        for session_id in dict.fromkeys(args.session):
            record = await store.get(session_id)
            if record is None:
                raise ReplayError(f"no archived session {session_id!r}")
            records.append(record)
        return records
    except ArchiveUnavailable as exc:
        raise ReplayError(f"archive database unreachable: {exc}") from None
    finally:
        await store.close()


async def _replay(
    args: argparse.Namespace,
    replayer: Replayer,
    records: list[ArchivedSession],
    out: TextIO,
) -> int:
    from orchestrator.testing import replay_report
    from orchestrator.testing.replay import SessionReplay, recorded

    began = time.perf_counter()
    outcomes: list[SessionReplay] = []
    progress = replay_report.Progress(len(records))
    try:
        for done, record in enumerate(records, start=1):
            outcome = await replayer.replay(record)
            outcomes.append(outcome)
            if outcome.differs or outcome.marks:
                progress.close()
                replay_report.report(outcome, out)
            progress.update(done)
    finally:
        progress.close()
    seconds = time.perf_counter() - began
    print(replay_report.summary(outcomes, seconds), file=out)
    try:
        if args.save_scenarios:
            written = replay_report.save_scenarios(
                args.save_scenarios, [recorded(record) for record in records]
            )
            print(f"wrote {len(written)} scenario file(s) to {args.save_scenarios}", file=out)
        if args.json:
            replay_report.write_json(args.json, outcomes, seconds)
        if args.junit:
            replay_report.write_junit(args.junit, outcomes)
    except OSError as exc:
        raise ReplayError(f"cannot write: {exc}") from None
    return EXIT_DIFFERS if any(outcome.differs for outcome in outcomes) else EXIT_SAME
