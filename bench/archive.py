"""The transcript archive: write throughput on SQLite and PostgreSQL, and the time
of a filtered page over many archived turns on PostgreSQL.

- writes: S ended sessions (T turns each, every reply with its latency stages)
  go through the real ``ArchiveWriter`` (queue, batches, upserts) into a fresh
  SQLite file and a fresh PostgreSQL database; sessions/s from the first
  ``session_ended`` until ``stop()`` has flushed the queue.
- queries: ``--turns`` N archived turns (N / 10 sessions over 30 days, 5
  issuers, two claims each) are bulk-loaded with COPY into a fresh PostgreSQL
  database (then ANALYZE), and ``ArchiveStore.page`` is timed for each filter
  the list route takes (a time range, an issuer, a claim, an end reason, and
  the second page through a cursor) plus ``get`` (one record with its
  transcript); p50 and p99 over Q queries each. Target: p99 < 50 ms.

PostgreSQL is a throwaway cluster on a free loopback port, as in the tests
(``tests/postgres_server.py``: its own data directory, fsync off); without
Debian's ``postgresql`` binaries the PostgreSQL rows are skipped. No network
beyond loopback; the exit status is non-zero only on errors.

    python3 bench/archive.py              # S=5000 T=10, N=1,000,000 turns, Q=200
    python3 bench/archive.py --turns 200000
    python3 bench/archive.py --quick      # S=50, N=2,000, Q=10, for smoke tests
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.token_endpoint import machine  # noqa: E402
from orchestrator.archive.store import ArchiveQuery, ArchiveStore  # noqa: E402
from orchestrator.archive.writer import ArchiveWriter  # noqa: E402
from orchestrator.sessions.model import Session  # noqa: E402
from tests.postgres_server import RestartablePostgres  # noqa: E402

TURNS_PER_SESSION = 10
ISSUERS = tuple(f"key-{n}" for n in range(5))
PLANS = ("free", "silver", "gold")
REASONS = ("disconnected", "terminated", "shutdown")
SPAN_SECONDS = 30 * 86_400
NOW = 1_760_000_000.0


def ended_session(n: int, turns: int) -> Session:
    session = Session(id=f"w-{n:07d}", issuer="bench", expires_at=int(time.time()) + 600)
    session.claims = {"plan": PLANS[n % 3], "region": "eu"}
    for t in range(turns // 2):
        session.add_turn("user", f"hello number {t} from session {n}")
        session.add_turn("dp", f"You said: hello number {t} from session {n}")
        session.transcript[-1].latency_ms = {"handler_done": 1.5, "first_frame": 2.0}
    session.mark_ended()
    return session


async def write_rate(url: str, count: int, turns: int) -> float:
    """Sessions/s through the writer, from the first end to a flushed queue."""
    sessions = [ended_session(n, turns) for n in range(count)]
    writer = ArchiveWriter(ArchiveStore(url), queue_size=count)
    await writer.start()
    started = time.perf_counter()
    for session in sessions:
        writer.session_ended(session)
    await writer.stop()
    elapsed = time.perf_counter() - started
    store = ArchiveStore(url)
    try:
        stored = await store.count()
    finally:
        await store.close()
    if stored != count:
        raise RuntimeError(f"{stored} of {count} sessions archived")
    return count / elapsed


async def bulk_load(url: str, turns: int) -> float:
    """``turns`` archived turns (and their sessions and claims) by COPY; seconds taken."""
    import asyncpg  # type: ignore[import-untyped]

    store = ArchiveStore(url)
    await store.migrate()
    await store.close()
    rng = random.Random(16)
    session_rows: list[tuple[Any, ...]] = []
    claim_rows: list[tuple[str, str, str]] = []
    turn_rows: list[tuple[Any, ...]] = []
    for n in range(turns // TURNS_PER_SESSION):
        session_id = f"s-{n:08d}"
        ended = NOW - rng.random() * SPAN_SECONDS
        claims = {"plan": rng.choice(PLANS), "region": f"r{n % 7}"}
        session_rows.append(
            (session_id, ISSUERS[n % len(ISSUERS)], f"dp-{n}", "1", ended - 300, ended - 299,
             ended, rng.choice(REASONS), json.dumps(claims), "{}",
             TURNS_PER_SESSION // 2, ended, TURNS_PER_SESSION)  # user turns; archived; lines
        )  # fmt: skip
        claim_rows.extend((session_id, name, value) for name, value in claims.items())
        for seq in range(TURNS_PER_SESSION):
            role = "user" if seq % 2 == 0 else "dp"
            latency = '{"handler_done": 1.5, "first_frame": 2.0}' if role == "dp" else None
            text = f"turn {seq} of session {n}: a sentence of ordinary length."
            turn_rows.append(
                (session_id, seq, ended - 290 + seq, role, text, False, None, None, latency)
            )
    started = time.perf_counter()
    connection = await asyncpg.connect(url)
    try:
        await connection.copy_records_to_table("archived_sessions", records=session_rows)
        await connection.copy_records_to_table("archived_claims", records=claim_rows)
        await connection.copy_records_to_table("archived_turns", records=turn_rows)
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    return time.perf_counter() - started


async def timed(call: Callable[[], Awaitable[Any]], count: int) -> tuple[float, float]:
    """p50 and p99 in milliseconds of ``count`` calls, after one warm-up."""
    await call()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


async def query_times(url: str, count: int) -> list[tuple[str, float, float]]:
    store = ArchiveStore(url)
    rng = random.Random(7)
    _, cursor = await store.page(ArchiveQuery(issuer=ISSUERS[0]))

    def window() -> ArchiveQuery:
        since = NOW - rng.random() * SPAN_SECONDS
        return ArchiveQuery(since=since, until=since + 86_400)

    queries: list[tuple[str, Callable[[], ArchiveQuery]]] = [
        ("newest page", lambda: ArchiveQuery()),
        ("one day (since, until)", window),
        ("issuer", lambda: ArchiveQuery(issuer=rng.choice(ISSUERS))),
        ("claim plan:gold", lambda: ArchiveQuery(claim=("plan", "gold"))),
        ("claim + issuer + day", lambda: ArchiveQuery(
            claim=("plan", rng.choice(PLANS)), issuer=rng.choice(ISSUERS),
            since=NOW - rng.random() * SPAN_SECONDS, until=NOW)),
        ("end_reason", lambda: ArchiveQuery(end_reason=rng.choice(REASONS))),
        ("issuer, 2nd page (cursor)", lambda: ArchiveQuery(issuer=ISSUERS[0], cursor=cursor)),
    ]  # fmt: skip
    rows = []
    try:
        for name, make in queries:
            p50, p99 = await timed(lambda make=make: store.page(make()), count)  # type: ignore[misc]
            rows.append((f"page of 20: {name}", p50, p99))
        sessions = (await store.count()) or 1
        p50, p99 = await timed(lambda: store.get(f"s-{rng.randrange(sessions):08d}"), count)
        rows.append((f"get (record + {TURNS_PER_SESSION} turns)", p50, p99))
    finally:
        await store.close()
    return rows


@contextmanager
def postgres() -> Iterator[RestartablePostgres | None]:
    """A throwaway cluster, or ``None`` when PostgreSQL is not installed."""
    try:
        server = RestartablePostgres()
    except BaseException as exc:  # pytest.skip's exception, raised without the binaries
        if type(exc).__name__ != "Skipped":
            raise
        yield None
        return
    try:
        server.start()
        yield server
    finally:
        server.remove()


async def run(args: argparse.Namespace) -> int:
    sessions, turns, queries = (50, 2_000, 10) if args.quick else (args.sessions, args.turns, 200)
    print(f"archive on {machine()}; loopback only", flush=True)
    with tempfile.TemporaryDirectory() as tmp, postgres() as pg:
        rate = await write_rate(f"sqlite:///{tmp}/archive.db", sessions, TURNS_PER_SESSION)
        shape = f"({sessions} sessions x {TURNS_PER_SESSION} turns)"
        print(f"  writes, SQLite:      {rate:8.0f} sessions/s {shape}", flush=True)
        if pg is None:
            print("  PostgreSQL is not installed: its rows are skipped")
            return 0
        rate = await write_rate(pg.create_database("writes"), sessions, TURNS_PER_SESSION)
        print(f"  writes, PostgreSQL:  {rate:8.0f} sessions/s {shape}", flush=True)
        url = pg.create_database("queries")
        loaded = await bulk_load(url, turns)
        count = f"{turns:,} turns ({turns // TURNS_PER_SESSION:,} sessions)"
        print(f"  loaded {count} by COPY in {loaded:.1f} s", flush=True)
        rows = await query_times(url, queries)
    print()
    print(f"PostgreSQL, {turns:,} archived turns, {queries} queries each")
    print(f"{'query':<44} {'p50 ms':>7} {'p99 ms':>7}")
    for name, p50, p99 in rows:
        print(f"{name:<44} {p50:>7.2f} {p99:>7.2f}")
    print(f"worst p99: {max(p99 for _, _, p99 in rows):.2f} ms (target < 50 ms)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=5000, help="sessions written (S)")
    parser.add_argument("--turns", type=int, default=1_000_000, help="archived turns loaded (N)")
    parser.add_argument("--quick", action="store_true", help="S=50, N=2,000, Q=10")
    args = parser.parse_args(argv)
    if not (1 <= args.sessions <= 100_000 and TURNS_PER_SESSION <= args.turns <= 10_000_000):
        parser.error("--sessions is 1 to 100,000 and --turns 10 to 10,000,000")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
