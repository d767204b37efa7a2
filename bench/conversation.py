"""Conversation round trips through the real control socket, with the shared wsload tool.

Starts the real server (``python -m bench.apps``: ``orchestrator serve`` with
the default conversation handler plus the bench routes, one worker, a freshly
generated key, LOG_LEVEL=warning, ``TOKEN_RATE_LIMIT`` it cannot hit) on a free
loopback port, then for each size N (sockets) x R (rounds per socket):

- reference: the shared ``wsload.py ws://.../bench/echo-ws N R`` unchanged,
  against a minimal WebSocket route on the same server that answers each frame
  with one fixed ``conversationResponse``;
- real: ``bench/wsload_tokens.py``, which runs wsload's own per-socket code
  with one token per socket, each fetched from ``GET /api/jwt`` (one token is
  one session, and the newest connection of a session wins), so every socket
  is authenticated as a video host's would be.

Each prints wsload's line (``conns= rounds= ok= errors= p50_ms= p99_ms=
msgs_per_s=``); the two alternate ``--rounds`` times per size (this machine's
speed drifts), and the table shows the medians and the real/reference ratio
of median messages/s. wsload is looked for at ``../shared/bench/wsload.py`` next to the
repository (exit 2 when absent). No target; the exit status is non-zero only
on errors.

    python3 bench/conversation.py            # ~1 min: N=100 R=20, N=1000 R=5, 3 rounds
    python3 bench/conversation.py --quick    # N=5 R=3, for smoke tests
"""

from __future__ import annotations

import argparse
import re
import resource
import statistics
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.apps import ECHO_WS_PATH  # noqa: E402
from bench.token_endpoint import HOST, BenchError, Config, machine, running_server  # noqa: E402

WSLOAD = ROOT.parent / "shared" / "bench" / "wsload.py"
WRAPPER = ROOT / "bench" / "wsload_tokens.py"
RUN_TIMEOUT_SECONDS = 120
_LINE = re.compile(
    r"conns=(?P<conns>\d+) rounds=(?P<rounds>\d+) ok=(?P<ok>\d+) errors=(?P<errors>\d+) "
    r"p50_ms=(?P<p50>[\d.na]+) p99_ms=(?P<p99>[\d.na]+) msgs_per_s=(?P<rate>\d+)"
)


@dataclass(frozen=True)
class Load:
    line: str
    ok: int
    errors: int
    p50_ms: float
    p99_ms: float
    msgs_per_s: float


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (inherited by the server and wsload)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run_load(command: list[str], expected: int) -> Load:
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
            timeout=RUN_TIMEOUT_SECONDS,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"did not finish in {RUN_TIMEOUT_SECONDS} s: {command}") from None
    match = _LINE.search(done.stdout)
    if done.returncode != 0 or match is None:
        raise BenchError(f"{command[1]} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    load = Load(
        line=match.group(0),
        ok=int(match.group("ok")),
        errors=int(match.group("errors")),
        p50_ms=float(match.group("p50")),
        p99_ms=float(match.group("p99")),
        msgs_per_s=float(match.group("rate")),
    )
    if load.errors or load.ok != expected:
        raise BenchError(f"{command[1]}: {load.ok}/{expected} round trips:\n{done.stdout}")
    return load


def median_load(loads: list[Load]) -> Load:
    """The run with the median messages/s, with the median p50 and p99 of all runs."""
    middle = sorted(loads, key=lambda load: load.msgs_per_s)[len(loads) // 2]
    return replace(
        middle,
        p50_ms=statistics.median(load.p50_ms for load in loads),
        p99_ms=statistics.median(load.p99_ms for load in loads),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--size",
        action="append",
        metavar="N:R",
        help="sockets:rounds, repeatable (default 100:20 and 1000:5)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternations per size, medians reported (3)"
    )
    parser.add_argument("--quick", action="store_true", help="5 sockets x 3 rounds, once")
    args = parser.parse_args(argv)
    if not WSLOAD.is_file():
        print(f"error: the shared load tool is missing: {WSLOAD}", file=sys.stderr)
        return 2
    sizes = ["5:3"] if args.quick else (args.size or ["100:20", "1000:5"])
    rounds = 1 if args.quick else args.rounds
    if not 1 <= rounds <= 20:
        parser.error("--rounds must be 1-20")
    try:
        plan = [tuple(int(x) for x in size.split(":")) for size in sizes]
    except ValueError:
        parser.error("--size is N:R, e.g. 100:20")
    if any(not (1 <= n <= 5000 and 1 <= r <= 1000) for n, r in plan):
        parser.error("N must be 1-5000 and R 1-1000")
    fds = raise_fd_limit()
    print(
        f"conversation round trips on {machine()}; fd limit {fds}; {HOST} only; "
        f"wsload: {WSLOAD.name}",
        flush=True,
    )
    rows: list[tuple[int, int, Load, Load]] = []
    try:
        with running_server(Config(1, "warning")) as port:
            for n, r in plan:
                echo = f"ws://{HOST}:{port}{ECHO_WS_PATH}"
                base = f"http://{HOST}:{port}"
                command = [sys.executable, str(WRAPPER), str(WSLOAD), base, str(n), str(r)]
                references: list[Load] = []
                reals: list[Load] = []
                for _ in range(rounds):  # alternated: the machine's drift hits both
                    load = run_load([sys.executable, str(WSLOAD), echo, str(n), str(r)], n * r)
                    print(f"  echo-ws:         {load.line}", flush=True)
                    references.append(load)
                    load = run_load(command, n * r)
                    print(f"  control socket:  {load.line}", flush=True)
                    reals.append(load)
                rows.append((n, r, median_load(references), median_load(reals)))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    print()
    print(
        f"{'N x R':>10} {'echo p50':>9} {'p99 ms':>7} {'msgs/s':>7} "
        f"{'/ws p50':>8} {'p99 ms':>7} {'msgs/s':>7} {'ratio':>6}"
    )
    for n, r, reference, real in rows:
        print(
            f"{f'{n} x {r}':>10} {reference.p50_ms:>9.2f} {reference.p99_ms:>7.2f} "
            f"{reference.msgs_per_s:>7.0f} {real.p50_ms:>8.2f} {real.p99_ms:>7.2f} "
            f"{real.msgs_per_s:>7.0f} {real.msgs_per_s / reference.msgs_per_s:>5.2f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
