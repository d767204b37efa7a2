"""Capacity at a realistic load: how many sessions, each taking one turn per period, hold p99.

Starts the real server (``python -m bench.apps``, one worker, a generated key,
LOG_LEVEL=warning, ``TOKEN_RATE_LIMIT`` it cannot hit) on a free loopback
port and ``--clients`` load-client processes (``bench/capacity_client.py``,
each from its own address 127.0.0.2, 127.0.0.3, ...). Every session has its
own token and control socket and takes one turn (wsload's
``conversationRequest`` -> ``conversationResponse``) every ``--period``
seconds, the sessions' phases spread evenly over the period.

The ramp: ``--start`` sessions, then times ``--growth`` until a step fails,
then bisection between the largest count that held and the smallest that
failed, to within ``--resolution`` or until ``--budget`` seconds are spent.
Sessions are added at a bounded rate and kept open from step to step (the
newest are closed when bisection goes down). A step waits ``--warmup``
periods once every session is open, then measures ``--window`` periods: it
holds when the turns' p99 is at most ``--p99-ms``, nothing failed (no socket
error, no reply timeout) and every session took every turn (none fell a
period behind). The count is capped below the fd limit.

The vendor's Node sample gets the same ramp and the same client, without a
token: ``--vendor-dir`` starts ``node dist/server.js`` from a built
orchestration-nodejs directory (default ``$ANCHOR_BUILD/orch`` or
``/tmp/vendor-anchors/orch``, where ``../shared/bench/vendor_side_by_side.sh``
builds it; skipped when absent), ``--vendor-url ws://127.0.0.1:PORT`` uses
one already running. Each step prints the server's and the clients' CPU use
(% of one core, from ``/proc/PID/stat`` and ``time.process_time``) and says
when a client was over 90% busy or sent its turns late (send lag p99 over
half the p99 limit): then the client, not the server, was a limit. No
target; the exit status is non-zero only on errors.

    python3 bench/capacity.py            # ~4 min: the project, then the vendor sample
    python3 bench/capacity.py --quick    # 20 and 40 sessions, 1 s period, project only
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import token_endpoint  # noqa: E402
from bench.capacity_ramp import Plan, Step, Target, ramp  # noqa: E402
from bench.token_endpoint import HOST, BenchError, free_loopback_port  # noqa: E402
from bench.wsload_tokens import raise_fd_limit  # noqa: E402

VENDOR_START_SECONDS = 20.0
FD_HEADROOM = 500


def default_vendor_dir() -> Path:
    build = os.environ.get("ANCHOR_BUILD") or Path(tempfile.gettempdir()) / "vendor-anchors"
    return Path(build) / "orch"


@contextlib.contextmanager
def running_vendor(directory: Path) -> Iterator[tuple[str, int]]:
    """``node dist/server.js`` from ``directory`` on a free loopback port: (URL, pid)."""
    port = free_loopback_port()
    env = {**os.environ, "EXPRESS_PORT": str(port)}
    with tempfile.TemporaryFile() as log:
        # It logs every connection: to a file, as a pipe nobody reads would stall it.
        node = subprocess.Popen(
            ["node", "dist/server.js"],
            cwd=directory,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + VENDOR_START_SECONDS
            while True:
                if node.poll() is not None:
                    log.seek(0)
                    raise BenchError(f"node exited ({node.returncode}): {log.read()[-2000:]!r}")
                with contextlib.suppress(OSError), socket.create_connection((HOST, port), 1):
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"node did not listen within {VENDOR_START_SECONDS} s")
                time.sleep(0.1)
            yield f"ws://{HOST}:{port}", node.pid
        finally:
            node.terminate()
            try:
                node.wait(10)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait(10)


def result_line(name: str, steps: list[Step], plan: Plan) -> str:
    held = [s for s in steps if s.holds]
    failed = [s for s in steps if not s.holds]
    best = max(held, key=lambda s: s.sessions) if held else None
    first_fail = min(failed, key=lambda s: s.sessions) if failed else None
    if best is None:
        return f"{name}: no count held (smallest tried: {min(s.sessions for s in steps)})"
    text = f"{name}: {best.sessions} sessions (p99 {best.p99_ms:.1f} ms"
    if first_fail is not None:
        text += f"; {first_fail.sessions} failed: {first_fail.reason}"
    elif best.sessions >= plan.cap:
        text += f"; that is the cap ({plan.cap_reason}): capacity is at least this"
    return text + ")"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--period", type=float, default=4.0, help="seconds between turns (4)")
    parser.add_argument("--p99-ms", type=float, default=50.0, help="the p99 a step must hold (50)")
    parser.add_argument("--start", type=int, default=1000, help="first count (1000)")
    parser.add_argument("--growth", type=float, default=2.0, help="factor until a failure (2)")
    parser.add_argument("--resolution", type=float, default=0.1, help="bisection stops (0.1)")
    parser.add_argument("--warmup", type=float, default=1.0, help="periods before measuring (1)")
    parser.add_argument("--window", type=float, default=2.0, help="periods measured (2)")
    parser.add_argument("--budget", type=float, default=110.0, help="seconds per target (110)")
    parser.add_argument("--max", type=int, default=50_000, help="largest count (fd-limited)")
    parser.add_argument("--clients", type=int, default=1, help="client processes (1)")
    parser.add_argument("--vendor-dir", type=Path, help="a built orchestration-nodejs")
    parser.add_argument("--vendor-url", help="ws://127.0.0.1:PORT of a running vendor sample")
    parser.add_argument("--no-vendor", action="store_true", help="the project only")
    parser.add_argument("--quick", action="store_true", help="20 and 40 sessions, 1 s period")
    args = parser.parse_args(argv)
    if not (0.2 <= args.period <= 60 and 1 <= args.clients <= 8 and args.growth > 1):
        parser.error("--period 0.2-60, --clients 1-8, --growth > 1")
    if args.vendor_url and not args.vendor_url.startswith(f"ws://{HOST}:"):
        parser.error(f"--vendor-url must be ws://{HOST}:PORT")
    raise_fd_limit()
    fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    cap, cap_reason = min(args.max, fds - FD_HEADROOM), "--max"
    if args.quick:
        cap, cap_reason = min(cap, 40), "--quick"
    elif cap < args.max:
        cap_reason = f"fd limit {fds} less {FD_HEADROOM}"
    plan = Plan(
        period=1.0 if args.quick else args.period,
        p99_ms=args.p99_ms,
        start=20 if args.quick else args.start,
        growth=2.0 if args.quick else args.growth,
        resolution=args.resolution,
        warmup=args.warmup,
        window=1.0 if args.quick else args.window,
        budget=60.0 if args.quick else args.budget,
        cap=cap,
        cap_reason=cap_reason,
        clients=args.clients,
    )
    vendor_dir = args.vendor_dir or (None if args.quick else default_vendor_dir())
    if args.no_vendor or args.vendor_url:
        vendor_dir = None
    elif vendor_dir is not None and not (vendor_dir / "dist" / "server.js").is_file():
        if args.vendor_dir:
            parser.error(f"{vendor_dir}/dist/server.js is missing")
        print(f"note: no vendor sample at {vendor_dir} (build it with vendor_side_by_side.sh)")
        vendor_dir = None
    print(
        f"capacity at one turn per {plan.period:g} s on {token_endpoint.machine()}; "
        f"holds: turn p99 <= {plan.p99_ms:g} ms, no errors; {plan.clients} client process(es); "
        f"fd limit {fds} "
        f"(cap {plan.cap} sessions: {plan.cap_reason}); 127.0.0.x only",
        flush=True,
    )
    results: dict[str, list[Step]] = {}
    try:
        project = token_endpoint.running_server_process(token_endpoint.Config(1, "warning"))
        with project as (port, pid):
            print("project (1 worker, token per session):", flush=True)
            results["project"] = ramp(Target(f"http://{HOST}:{port}", pid), plan)
        if vendor_dir is not None:
            with running_vendor(vendor_dir) as (url, node_pid):
                print(f"vendor sample (node, {vendor_dir}):", flush=True)
                results["vendor"] = ramp(Target(url, node_pid), plan)
        elif args.vendor_url:
            print(f"vendor sample ({args.vendor_url}, CPU not known):", flush=True)
            results["vendor"] = ramp(Target(args.vendor_url, None), plan)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report(results, plan)
    return 0


def report(results: dict[str, list[Step]], plan: Plan) -> None:
    print(f"\nlargest count with turn p99 <= {plan.p99_ms:g} ms, one turn per {plan.period:g} s:")
    for name, steps in results.items():
        print("  " + result_line(name, steps, plan))
    best = {
        name: max((s.sessions for s in steps if s.holds), default=0)
        for name, steps in results.items()
    }
    if best.get("vendor"):
        print(f"  project / vendor: {best['project'] / best['vendor']:.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
