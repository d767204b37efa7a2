"""A connect storm, with the CPU each side used: who was the bottleneck.

``wsload.py`` (the shared load tool) reports messages/s, and on two CPUs the
figure is the slower of the two processes: the server, or the one Python
process playing every video host. This script runs wsload's own per-socket
code (``wsload.host``: connect, then R ``conversationRequest`` ->
``conversationResponse`` round trips) for N sockets that all connect at
once, in ``--clients`` processes, and reports for each run the messages/s,
the round trips' p50/p99, the opening handshakes' p50/p99 (``connect``: from
``websockets.connect`` to the socket open, timed around wsload's own call),
the CPU seconds the server used during the timed phase (from
``/proc``) and the CPU the clients used. When the clients were busy for most
of the wall time, the run measured the clients, not the server: it says so.

Targets, interleaved round by round, medians reported:

- ``control``: the real control socket of ``orchestrator serve`` (started here:
  ``python -m bench.apps``, embedded defaults, one worker), one token per
  socket from ``GET /api/jwt`` fetched before the clock starts;
- ``echo``: the same server's ``/bench/echo-ws`` (one fixed reply per frame);
- ``vendor``: ``--vendor-url ws://...`` for an already running server (e.g. the
  vendor's Node sample), and ``--vendor-pid`` to read its CPU.

    python3 bench/connect_storm.py                       # N=1000 R=5, 3 rounds
    python3 bench/connect_storm.py --clients 2 --vendor-url ws://127.0.0.1:8080 --vendor-pid PID
    python3 bench/connect_storm.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import token_endpoint as servers  # noqa: E402
from bench.apps import ECHO_WS_PATH  # noqa: E402
from bench.conversation import WSLOAD, raise_fd_limit  # noqa: E402
from bench.token_endpoint import HOST, BenchError  # noqa: E402
from bench.wsload_tokens import fetch_socket_urls, load_wsload  # noqa: E402

CLIENT_BOUND_SHARE = 0.9  # clients busy this share of the wall time: they set the pace
RUN_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Run:
    ok: int
    errors: int
    wall_s: float
    p50_ms: float
    p99_ms: float
    connect_p50_ms: float
    connect_p99_ms: float
    server_cpu_s: float | None
    client_cpu_s: float

    @property
    def msgs_per_s(self) -> float:
        return self.ok / self.wall_s

    def client_bound(self, clients: int) -> bool:
        return self.client_cpu_s >= CLIENT_BOUND_SHARE * self.wall_s * min(clients, cpu_count())


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def time_opening_handshakes(wsload: ModuleType, opens: list[float]) -> None:
    """Make wsload's ``websockets.connect`` record how long each socket took to open."""
    real_connect = wsload.websockets.connect

    class TimedConnect:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._connect = real_connect(*args, **kwargs)

        async def __aenter__(self) -> Any:
            started = time.perf_counter()
            socket = await self._connect.__aenter__()
            opens.append(time.perf_counter() - started)
            return socket

        async def __aexit__(self, *exc_info: Any) -> Any:
            return await self._connect.__aexit__(*exc_info)

    wsload.websockets = SimpleNamespace(connect=TimedConnect)


def _client(
    wsload_path: str, urls: list[str], rounds: int, start_at: float, out: multiprocessing.Queue
) -> None:
    """One client process: its sockets, started together at ``start_at``."""
    wsload: ModuleType = load_wsload(wsload_path)
    opens: list[float] = []
    time_opening_handshakes(wsload, opens)

    async def storm() -> tuple[list[float], int, int, float, list[float]]:
        latencies: list[float] = []
        ok = [0]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu = time.process_time()
        results = await asyncio.gather(
            *(wsload.host(url, rounds, latencies, ok) for url in urls), return_exceptions=True
        )
        errors = sum(isinstance(result, BaseException) for result in results)
        return latencies, ok[0], errors, time.process_time() - cpu, opens

    out.put(asyncio.run(storm()))


def storm(urls: list[str], rounds: int, clients: int, server_pid: int | None) -> Run:
    """All ``urls`` at once, split over ``clients`` processes."""
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = context.Queue()
    start_at = time.time() + 0.5  # every client process is up and waiting by then
    processes = [
        context.Process(
            target=_client, args=(str(WSLOAD), urls[i::clients], rounds, start_at, results)
        )
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    time.sleep(max(0.0, start_at - time.time()))
    server_before = process_cpu_seconds(server_pid) if server_pid else None
    started = time.perf_counter()
    gathered = [results.get(timeout=RUN_TIMEOUT_SECONDS) for _ in processes]
    wall = time.perf_counter() - started
    server_cpu = (
        process_cpu_seconds(server_pid) - server_before
        if server_pid and server_before is not None
        else None
    )
    for process in processes:
        process.join()
    latencies = sorted(latency for result in gathered for latency in result[0])
    opens = sorted(seconds for result in gathered for seconds in result[4])
    if not latencies or not opens:
        raise BenchError("no round trip completed")

    def quantile(q: float, values: list[float] = latencies) -> float:
        return values[min(len(values) - 1, int(q * len(values)))] * 1e3

    return Run(
        ok=sum(result[1] for result in gathered),
        errors=sum(result[2] for result in gathered),
        wall_s=wall,
        p50_ms=quantile(0.5),
        p99_ms=quantile(0.99),
        connect_p50_ms=quantile(0.5, opens),
        connect_p99_ms=quantile(0.99, opens),
        server_cpu_s=server_cpu,
        client_cpu_s=sum(result[3] for result in gathered),
    )


def describe(name: str, run: Run, clients: int) -> str:
    server = f"{run.server_cpu_s:.2f}" if run.server_cpu_s is not None else "?"
    bound = "  (client-bound)" if run.client_bound(clients) else ""
    return (
        f"  {name:<8} {run.msgs_per_s:>7.0f} msg/s"
        f"  p50 {run.p50_ms:>7.1f}  p99 {run.p99_ms:>7.1f} ms"
        f"  connect p50 {run.connect_p50_ms:>6.1f}  p99 {run.connect_p99_ms:>6.1f} ms"
        f"  server cpu {server} s  client cpu {run.client_cpu_s:.2f} s  wall {run.wall_s:.2f} s"
        f"  errors {run.errors}{bound}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sockets", type=int, default=1000, metavar="N", help="(1000)")
    parser.add_argument("--turns", type=int, default=5, metavar="R", help="per socket (5)")
    parser.add_argument("--clients", type=int, default=1, metavar="K", help="client processes (1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, medians reported (3)")
    parser.add_argument("--vendor-url", help="ws:// URL of another server to storm too")
    parser.add_argument("--vendor-pid", type=int, help="its process id, to read its CPU")
    parser.add_argument("--quick", action="store_true", help="20 sockets x 2 turns, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.sockets, args.turns, args.rounds = 20, 2, 1
    if not (1 <= args.sockets <= 5000 and 1 <= args.turns <= 1000 and 1 <= args.clients <= 8):
        parser.error("sockets 1-5000, turns 1-1000, clients 1-8")
    if not WSLOAD.is_file():
        print(f"error: the shared load tool is missing: {WSLOAD}", file=sys.stderr)
        return 2
    raise_fd_limit()
    print(
        f"connect storm on {servers.machine()}: {args.sockets} sockets x "
        f"{args.turns} turns, {args.clients} client process(es), {args.rounds} round(s)",
        flush=True,
    )
    runs: dict[str, list[Run]] = {}
    try:
        with servers.running_server_process(servers.Config(1, "warning")) as (port, pid):
            base = f"http://{HOST}:{port}"
            targets: list[tuple[str, int | None]] = [("control", pid), ("echo", pid)]
            if args.vendor_url:
                targets.append(("vendor", args.vendor_pid))
            for round_number in range(1, args.rounds + 1):
                print(f"round {round_number}", flush=True)
                for name, target_pid in targets:
                    if name == "control":
                        urls = fetch_socket_urls(base, args.sockets)
                    elif name == "echo":
                        urls = [f"ws://{HOST}:{port}{ECHO_WS_PATH}"] * args.sockets
                    else:
                        urls = [args.vendor_url] * args.sockets
                    run = storm(urls, args.turns, args.clients, target_pid)
                    if run.errors or run.ok != args.sockets * args.turns:
                        raise BenchError(f"{name}: {run.ok} round trips, {run.errors} errors")
                    print(describe(name, run, args.clients), flush=True)
                    runs.setdefault(name, []).append(run)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("medians:")
    for name, measured in runs.items():
        median = sorted(measured, key=lambda run: run.msgs_per_s)[len(measured) // 2]
        server = [run.server_cpu_s for run in measured if run.server_cpu_s is not None]
        cpu = f"{statistics.median(server):.2f}" if server else "?"
        bound = sum(run.client_bound(args.clients) for run in measured)
        print(
            f"  {name:<8} {median.msgs_per_s:>7.0f} msg/s  "
            f"p99 {statistics.median(run.p99_ms for run in measured):>7.1f} ms  "
            f"connect p99 {statistics.median(run.connect_p99_ms for run in measured):>7.1f} ms  "
            f"server cpu {cpu} s  client-bound in {bound}/{len(measured)} rounds"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
