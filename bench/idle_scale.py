"""Idle scale: resident memory per idle control socket, and a turn's latency among them.

Starts the real server (``python -m bench.apps``, one worker, a generated key,
LOG_LEVEL=warning, ``TOKEN_RATE_LIMIT`` it cannot hit) on a free loopback
port, warms it up (one token, one socket, one turn), reads its VmRSS from
``/proc/PID/status`` (the baseline), then starts ``--clients`` client
processes (this script with ``--client``). Each fetches its share of tokens
from ``GET /api/jwt`` (one session per socket), opens one authenticated
control socket per token (``?access_token=``) from its own source address
(127.0.0.2, 127.0.0.3, ...; loopback only) and holds them idle. With all N
open the script reads VmRSS again: ``(RSS with N - baseline) / N`` is the
memory per idle session (the socket, its connection objects and the session
record). Then one socket does ``--turns`` conversationRequest ->
conversationResponse round trips while the others idle; their p99 is reported.

Targets: under 50 KiB per idle session; a turn under 50 ms p99. A missed
target is printed as ``TARGET MISSED``; the exit status is non-zero only on
errors. The fd limit is raised to the hard limit in this process (inherited
by the server and the clients). Every phase is bounded in time.

    python3 bench/idle_scale.py            # ~1 min: 10,000 sockets
    python3 bench/idle_scale.py --quick    # 50 sockets, for smoke tests
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.token_endpoint import (  # noqa: E402
    HOST,
    BenchError,
    Config,
    machine,
    running_server_process,
)
from bench.wsload_tokens import fetch_socket_urls, raise_fd_limit  # noqa: E402

TARGET_KIB_PER_SESSION = 50.0
TARGET_P99_MS = 50.0
CONNECT_CONCURRENCY = 100
PHASE_TIMEOUT_SECONDS = 120.0
SETTLE_SECONDS = 1.0
# What wsload.py sends: the same turn the conversation benchmark measures.
REQUEST = json.dumps(
    {
        "category": "scene",
        "kind": "event",
        "name": "conversationRequest",
        "body": {
            "personaId": 1,
            "input": {"text": "hello there"},
            "variables": {},
            "optionalArgs": {},
        },
    }
)


# --- client process ----------------------------------------------------------------


async def round_trip(ws: Any) -> float:
    started = time.perf_counter()
    await ws.send(REQUEST)
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message.get("name") == "conversationResponse":
            return time.perf_counter() - started


async def client(base: str, count: int, source: str) -> None:
    """Open ``count`` sockets from ``source``; then obey stdin: TURNS k, CLOSE."""
    import websockets

    urls = fetch_socket_urls(base, count)
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    sockets: list[Any] = []

    async def open_one(url: str) -> None:
        async with gate:
            sockets.append(
                await websockets.connect(
                    url, ping_interval=None, open_timeout=30, local_addr=(source, 0)
                )
            )

    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(open_one(url) for url in urls)), PHASE_TIMEOUT_SECONDS
        )
        print(f"READY {len(sockets)}", flush=True)
        while True:
            line = await asyncio.wait_for(
                loop.run_in_executor(None, sys.stdin.readline), PHASE_TIMEOUT_SECONDS
            )
            words = line.split()
            if not words or words[0] == "CLOSE":
                break
            if words[0] == "TURNS":
                latencies = [await round_trip(sockets[0]) for _ in range(int(words[1]))]
                print("LAT " + json.dumps(latencies), flush=True)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


# --- the benchmark -------------------------------------------------------------------


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


def warm_up(port: int) -> None:
    """One token, one socket, one turn: load every lazily imported code path."""
    import websockets.sync.client

    (url,) = fetch_socket_urls(f"http://{HOST}:{port}", 1)
    with websockets.sync.client.connect(url, open_timeout=10) as ws:
        ws.send(REQUEST)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if json.loads(ws.recv(timeout=10)).get("name") == "conversationResponse":
                return
    raise BenchError("warm-up turn got no conversationResponse")


def read_line(process: subprocess.Popen[str], prefix: str, timeout: float) -> str:
    """The client's next line starting with ``prefix`` (it exits or hangs: error)."""
    stdout: IO[str] | None = process.stdout
    assert stdout is not None
    result: list[str] = []

    def reader() -> None:
        for line in stdout:
            if line.startswith(prefix):
                result.append(line)
                return

    import threading

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout)
    if not result:
        raise BenchError(f"a client gave no {prefix.strip()} line within {timeout:.0f} s")
    return result[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sockets", type=int, default=10_000, help="idle sockets (10000)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (2)")
    parser.add_argument("--turns", type=int, default=200, help="round trips measured (200)")
    parser.add_argument("--quick", action="store_true", help="50 sockets, 20 turns")
    parser.add_argument("--client", nargs=3, metavar=("BASE", "COUNT", "SOURCE"), help="internal")
    args = parser.parse_args(argv)
    if args.client:
        raise_fd_limit()
        base, count, source = args.client
        asyncio.run(client(base, int(count), source))
        return 0
    sockets, turns = (50, 20) if args.quick else (args.sockets, args.turns)
    clients = 1 if args.quick else args.clients
    if not (1 <= sockets <= 15_000 and 1 <= clients <= 8 and 1 <= turns <= 1000):
        parser.error("--sockets 1-15000, --clients 1-8, --turns 1-1000")
    raise_fd_limit()
    fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if sockets + 100 > fds:
        print(f"error: fd limit {fds} is too low for {sockets} sockets", file=sys.stderr)
        return 1
    print(
        f"idle scale on {machine()}; {sockets} sockets from {clients} client process(es); "
        f"fd limit {fds}; 127.0.0.x only",
        flush=True,
    )
    shares = [sockets // clients + (1 if i < sockets % clients else 0) for i in range(clients)]
    processes: list[subprocess.Popen[str]] = []
    try:
        with running_server_process(Config(1, "warning")) as (port, pid):
            warm_up(port)
            time.sleep(SETTLE_SECONDS)
            baseline = vm_rss_kib(pid)
            started = time.monotonic()
            for i, share in enumerate(shares):
                command = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--client",
                    f"http://{HOST}:{port}",
                    str(share),
                    f"127.0.0.{2 + i}",
                ]
                processes.append(
                    subprocess.Popen(
                        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                    )
                )
            opened = 0
            for process in processes:
                left = max(1.0, PHASE_TIMEOUT_SECONDS - (time.monotonic() - started))
                opened += int(read_line(process, "READY", left).split()[1])
            connect_seconds = time.monotonic() - started
            if opened != sockets:
                raise BenchError(f"only {opened} of {sockets} sockets opened")
            time.sleep(SETTLE_SECONDS)
            loaded = vm_rss_kib(pid)
            first = processes[0]
            assert first.stdin is not None
            first.stdin.write(f"TURNS {turns}\n")
            first.stdin.flush()
            latencies = json.loads(read_line(first, "LAT", PHASE_TIMEOUT_SECONDS)[4:])
            for process in processes:
                assert process.stdin is not None
                process.stdin.write("CLOSE\n")
                process.stdin.flush()
            for process in processes:
                process.wait(30)
    except (BenchError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(10)

    per_session = (loaded - baseline) / sockets
    ms = sorted(x * 1000 for x in latencies)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    print()
    print(f"opened {sockets} authenticated sockets in {connect_seconds:.1f} s")
    print(
        f"server VmRSS: baseline {baseline / 1024:.1f} MiB, with {sockets} idle sockets "
        f"{loaded / 1024:.1f} MiB"
    )
    verdict = "" if per_session < TARGET_KIB_PER_SESSION else "  TARGET MISSED"
    print(
        f"per idle session: {per_session:.1f} KiB (target < {TARGET_KIB_PER_SESSION:.0f}){verdict}"
    )
    verdict = "" if p99 < TARGET_P99_MS else "  TARGET MISSED"
    print(
        f"turn on one socket among {sockets}: {turns} round trips, p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms (target < {TARGET_P99_MS:.0f}){verdict}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
