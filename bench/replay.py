"""``orchestrator replay``: the time to replay S archived sessions of T turns with the
built-in handler.

The archive is made the way production makes it: S sessions of T user lines
each (a mix of what the built-in handler understands: names, cards, echoes,
questions it hands to a fallback) run through the conversation core in-process
with the built-in handler, are archived as they end (``ArchivedSession.of``)
and written through the store's own upsert into a fresh SQLite file. Then the
command itself runs (``orchestrator replay --handler default --limit S --json
FILE``, in this process): reading the sessions, replaying every turn through
the same core, comparing, writing the JSON report. Every session must come back
the same (exit 0). The progress bar shows when stderr is a terminal.

    python3 bench/replay.py               # S=1000 T=10
    python3 bench/replay.py --sessions 200 --turns 20
    python3 bench/replay.py --quick       # S=20, for smoke tests
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from orchestrator.archive.record import END_DISCONNECTED, ArchivedSession, ClaimPolicy  # noqa: E402
from orchestrator.archive.store import ArchiveStore  # noqa: E402
from orchestrator.cli import main  # noqa: E402
from orchestrator.config import Settings  # noqa: E402
from orchestrator.control.options import ControlOptions  # noqa: E402
from orchestrator.handlers.loader import load_handler  # noqa: E402
from orchestrator.logs import configure_logging  # noqa: E402
from orchestrator.testing.engine import InProcessConversation, close_options  # noqa: E402

LINES = (
    "hello there",
    "my name is Ada",
    "what is my name",
    "show me a card",
    "why is the sky blue?",
    "help",
    "I would like a table for two",
    "call me Grace",
    "thanks",
    "how does this work",
)
BATCH = 100


async def archive(url: str, sessions: int, turns: int) -> None:
    settings = Settings()
    options = ControlOptions.from_settings(settings, load_handler("default", settings))
    store = ArchiveStore(url)
    await store.migrate()
    policy = ClaimPolicy()
    batch: list[ArchivedSession] = []
    try:
        for n in range(sessions):
            conversation = InProcessConversation(
                options, claims={"user": f"user-{n}"}, session_id=f"bench-{n:06d}"
            )
            await conversation.start()
            await conversation.welcome()
            for t in range(turns):
                await conversation.say(LINES[(n + t) % len(LINES)])
            await conversation.close()
            batch.append(ArchivedSession.of(conversation.session, END_DISCONNECTED, policy))
            if len(batch) == BATCH:
                await store.write(batch)
                batch = []
        if batch:
            await store.write(batch)
    finally:
        await store.close()
        await close_options(options)


def run(sessions: int, turns: int) -> None:
    configure_logging(json=False, level="warning")
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as folder:
        url = f"sqlite:///{Path(folder) / 'archive.db'}"
        began = time.perf_counter()
        asyncio.run(archive(url, sessions, turns))
        made = time.perf_counter() - began
        report = Path(folder) / "replay.json"
        out = io.StringIO()
        began = time.perf_counter()
        with contextlib.redirect_stdout(out):
            code = main(
                ["replay", "--archive-url", url, "--handler", "default",
                 "--limit", str(sessions), "--json", str(report)]
            )  # fmt: skip
        seconds = time.perf_counter() - began
        summary = json.loads(report.read_text())["summary"]
    if code != 0 or summary["sessions"] != sessions or summary["differ"]:
        print(out.getvalue(), file=sys.stderr)
        raise SystemExit(f"replay exited {code}: {summary}")
    total = sessions * turns
    print(f"archived {sessions} sessions x {turns} turns in {made:.1f} s (setup)")
    print(f"replay: {sessions} sessions, {total} turns in {seconds:.2f} s")
    print(f"replay sessions/s: {sessions / seconds:,.0f}")
    print(f"replay turns/s: {total / seconds:,.0f}")


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="20 sessions, for smoke tests")
    args = parser.parse_args()
    run(20 if args.quick else args.sessions, args.turns)


if __name__ == "__main__":
    main_bench()
