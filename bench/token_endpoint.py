"""Requests/s and p99 latency of ``GET /api/jwt`` through the real server, with wrk.

Starts the server (``python -m bench.apps``: ``orchestrator serve`` plus one
constant route, see ``bench/apps.py``) as a subprocess on a free loopback port
with a freshly generated key, then runs the same wrk load against
``/bench/constant`` (the reference: same process, middleware, logging and
uvicorn settings, constant JSON body of the same size) and ``/api/jwt``,
alternating between the two for ``--rounds`` rounds; each figure is the median
of its rounds, so a drift in the machine's speed during a run (common on
shared and virtual machines) lands on both routes instead of on whichever ran
second. Every run is bounded (``--duration`` seconds), targets 127.0.0.1 only,
and the server is stopped at the end.

With one worker and two or more CPUs, the server runs alone on the first CPU
and wrk on the others (``sched_setaffinity``); with several workers nothing
is pinned. Configurations: 1 worker and ``--workers`` (default: the number of
CPUs), each at LOG_LEVEL=warning and at the default LOG_LEVEL=info (one
access-log line per request, to a file).

Target: /api/jwt at least 0.7x of the constant endpoint's requests/s. A missed
target is printed as ``TARGET MISSED``; the exit status is non-zero only on
errors (2 when wrk is missing and cannot be installed).

    python3 bench/token_endpoint.py            # ~2 min
    python3 bench/token_endpoint.py --quick    # ~3 s, for smoke tests
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.apps import CONSTANT_PATH, JWT_PATH  # noqa: E402

HOST = "127.0.0.1"  # loopback only, always
TARGET_RATIO = 0.7
START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 15.0


class BenchError(Exception):
    """Something went wrong (not a missed target)."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: str


def median_result(results: list[WrkResult]) -> WrkResult:
    """Per figure, the median over rounds (requests and errors are summed)."""
    return WrkResult(
        requests=sum(r.requests for r in results),
        requests_per_second=statistics.median(r.requests_per_second for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        non_2xx=sum(r.non_2xx for r in results),
        socket_errors="; ".join(r.socket_errors for r in results if r.socket_errors),
    )


@dataclass(frozen=True)
class Config:
    workers: int
    log_level: str

    @property
    def label(self) -> str:
        return f"{self.workers} worker{'s' if self.workers > 1 else ''}, LOG_LEVEL={self.log_level}"


# --- wrk ---------------------------------------------------------------------


def ensure_wrk(install: bool) -> str:
    """The wrk binary; installed with apt-get when missing, allowed and possible."""
    found = shutil.which("wrk")
    if found:
        return found
    can_apt = shutil.which("apt-get") is not None and hasattr(os, "geteuid") and os.geteuid() == 0
    if install and can_apt:
        print("wrk not found: installing it with apt-get install -y wrk", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "install", "-y", "wrk"], ["apt-get", "update"]):
            subprocess.run(command, env=env, check=False, timeout=600)
            if shutil.which("wrk"):
                break
        if not shutil.which("wrk"):
            subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=False, timeout=600)
        found = shutil.which("wrk")
        if found:
            return found
    raise BenchError(
        "wrk is not installed. Install it (Debian/Ubuntu: `sudo apt-get install wrk`; "
        "macOS: `brew install wrk`) and run again."
    )


_DURATION_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(match.group(1)) * _DURATION_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """The figures from ``wrk --latency`` output."""

    def find(pattern: str) -> str:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise BenchError(f"wrk output has no {pattern!r}:\n{output}")
        return match.group(1)

    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors:\s+(.+)$", output, re.MULTILINE)
    return WrkResult(
        requests=int(find(r"^\s*(\d+) requests in")),
        requests_per_second=float(find(r"^Requests/sec:\s+([\d.]+)")),
        p50_ms=_to_ms(find(r"^\s+50%\s+(\S+)")),
        p99_ms=_to_ms(find(r"^\s+99%\s+(\S+)")),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=errors.group(1).strip() if errors else "",
    )


def run_wrk(
    wrk: str,
    port: int,
    path: str,
    *,
    duration: int,
    threads: int,
    connections: int,
    cpus: frozenset[int] | None = None,
) -> WrkResult:
    url = f"http://{HOST}:{port}{path}"
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "--latency",
        url,
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            timeout=duration + 30,
            preexec_fn=_pinned_to(cpus),
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish: {' '.join(command)}") from None
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    result = parse_wrk(done.stdout)
    if result.requests == 0 or result.non_2xx:
        raise BenchError(
            f"{path}: {result.non_2xx} of {result.requests} responses were not 2xx:\n{done.stdout}"
        )
    return result


# --- the server ----------------------------------------------------------------


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _tail(log: IO[bytes], limit: int = 3000) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-limit:]


def split_cpus(workers: int) -> tuple[frozenset[int], frozenset[int]] | None:
    """(server CPUs, load-generator CPUs) for a one-worker server: the server
    alone on one CPU and wrk on the others, so the two never compete for a
    core (a main source of run-to-run noise). ``None`` where that cannot be
    done: several workers, one CPU, or no ``sched_setaffinity`` (not Linux)."""
    if workers != 1 or not hasattr(os, "sched_getaffinity"):
        return None
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return frozenset(available[:1]), frozenset(available[1:])


def _pinned_to(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


@contextlib.contextmanager
def running_server(config: Config, *, cpus: frozenset[int] | None = None) -> Iterator[int]:
    """A server with ``config`` on a free loopback port (on ``cpus``, if
    given), stopped on exit."""
    with running_server_process(config, cpus=cpus) as (port, _pid):
        yield port


@contextlib.contextmanager
def running_server_process(
    config: Config, *, cpus: frozenset[int] | None = None
) -> Iterator[tuple[int, int]]:
    """``running_server``, yielding the port and the server's process id (with
    one worker, the process that serves the requests)."""
    port = free_loopback_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ORCHESTRATOR_ENV": "development",
        "PRODUCTION_PERSONA": "false",
        "HOST": HOST,
        "JWT_PUBLIC_KEY": "bench-key",
        "JWT_PRIVATE_KEY": secrets.token_urlsafe(48),
        "LOG_LEVEL": config.log_level,
        # The per-IP limiter stays in the stack (it is there in every deployment)
        # but must not turn a load test into 429s.
        "TOKEN_RATE_LIMIT": "10000000/second",
    }
    for name in ("PUBLIC_URL", "ORCHESTRATION_SERVER", "CORS_ORIGINS", "JWT_PREVIOUS_KEYS"):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "bench.apps",
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(config.workers),
    ]
    # The server's log (the access log at info) goes to a file, as it would to a
    # real log sink; a pipe nobody reads would stall the server.
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
            preexec_fn=_pinned_to(cpus),
        )
        try:
            _wait_ready(server, port, log)
            yield port, server.pid
        finally:
            _stop(server)


def _wait_ready(server: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"the server exited ({server.returncode}):\n{_tail(log)}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, body = get(port, JWT_PATH)
            if status != 200 or "jwt" not in json.loads(body):
                raise BenchError(f"GET {JWT_PATH} answered {status}: {body[:300]!r}")
            status, _ = get(port, CONSTANT_PATH)
            if status != 200:
                raise BenchError(f"GET {CONSTANT_PATH} answered {status}")
            return
        time.sleep(0.1)
    raise BenchError(f"the server did not answer within {START_TIMEOUT_SECONDS} s:\n{_tail(log)}")


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            # The process group is the one this script created for the server.
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(STOP_TIMEOUT_SECONDS)


# --- the benchmark -------------------------------------------------------------


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    cpus = os.cpu_count() or 2
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=int, default=4, help="seconds per wrk run (default 4)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating runs per route (default 3)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    parser.add_argument(
        "--workers", type=int, default=max(2, cpus), help="multi-worker figure (default: CPUs)"
    )
    parser.add_argument("--quick", action="store_true", help="1 worker, warning, one 1 s round")
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 60:
        parser.error("--duration must be 1-60 seconds")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be 1-20")

    try:
        wrk = ensure_wrk(install=not args.no_install)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.quick:
        configs = [Config(1, "warning")]
        duration, warmup, rounds = 1, 0, 1
    else:
        configs = [
            Config(1, "warning"),
            Config(1, "info"),
            Config(args.workers, "warning"),
            Config(args.workers, "info"),
        ]
        duration, warmup, rounds = args.duration, 1, args.rounds
    print(
        f"GET {JWT_PATH} vs {CONSTANT_PATH} on {machine()}; wrk -t{args.threads} "
        f"-c{args.connections} -d{duration}s, {rounds} alternating round(s) per route, "
        f"against {HOST} only",
        flush=True,
    )
    rows: list[tuple[Config, WrkResult, WrkResult]] = []
    try:
        for config in configs:
            split = split_cpus(config.workers)
            server_cpus, load_cpus = split if split is not None else (None, None)
            with running_server(config, cpus=server_cpus) as port:
                results: dict[str, list[WrkResult]] = {CONSTANT_PATH: [], JWT_PATH: []}
                if warmup:
                    for path in results:
                        run_wrk(
                            wrk,
                            port,
                            path,
                            duration=warmup,
                            threads=1,
                            connections=10,
                            cpus=load_cpus,
                        )
                for _ in range(rounds):
                    for path, runs in results.items():
                        runs.append(
                            run_wrk(
                                wrk,
                                port,
                                path,
                                duration=duration,
                                threads=args.threads,
                                connections=args.connections,
                                cpus=load_cpus,
                            )
                        )
            reference, jwt = median_result(results[CONSTANT_PATH]), median_result(results[JWT_PATH])
            rows.append((config, reference, jwt))
            spread = "; ".join(
                f"{name} " + " ".join(f"{r.requests_per_second:.0f}" for r in results[path])
                for name, path in (("constant", CONSTANT_PATH), ("/api/jwt", JWT_PATH))
            )
            print(f"  done: {config.label} (req/s per round: {spread})", flush=True)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    print()
    print(
        f"{'configuration':<30} {'constant req/s':>14} {'p99 ms':>7} "
        f"{'/api/jwt req/s':>14} {'p99 ms':>7} {'ratio':>6}"
    )
    for config, reference, jwt in rows:
        ratio = jwt.requests_per_second / reference.requests_per_second
        verdict = "" if ratio >= TARGET_RATIO else "  TARGET MISSED"
        print(
            f"{config.label:<30} {reference.requests_per_second:>14.0f} {reference.p99_ms:>7.1f} "
            f"{jwt.requests_per_second:>14.0f} {jwt.p99_ms:>7.1f} {ratio:>5.2f}x{verdict}"
        )
        for name, result in (("constant", reference), ("/api/jwt", jwt)):
            if result.socket_errors:
                print(f"  {name}: socket errors: {result.socket_errors}")
    missed = [c for c, r, j in rows if j.requests_per_second < TARGET_RATIO * r.requests_per_second]
    print()
    if missed:
        print(
            f"TARGET MISSED (/api/jwt >= {TARGET_RATIO}x constant req/s) for: "
            + "; ".join(c.label for c in missed)
        )
    else:
        print(f"target met: /api/jwt >= {TARGET_RATIO}x constant req/s in every configuration")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
