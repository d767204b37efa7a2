"""Cross-instance command latency with Redis: ``POST /sessions/{id}/speak`` on
instance A reaching the host's control socket held by instance B.

Starts its own ``redis-server`` and two ``orchestrator serve`` processes on
loopback ports, connects one simulated video host to B, then times N speak
commands from the API call to the ``startSpeaking`` frame arriving at the host:
through A (routed via Redis to B) and, as the reference measured in the same
run, through B itself (no routing). Prints p50/p99 of both and their ratio.

Usage: python bench/cross_instance.py [-n 300] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.simulate import HostSimulator  # noqa: E402

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(port: int, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


@contextlib.contextmanager
def redis(workdir: str) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(port, process)
        yield f"redis://{HOST}:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextlib.contextmanager
def server(
    env: dict[str, str], *, with_pid: bool = False, port: int | None = None
) -> Iterator[Any]:
    """``orchestrator serve`` on ``port`` (default: a free one): yields its base
    URL (and pid if asked); stopped with SIGTERM, uvicorn's graceful shutdown."""
    port = free_port() if port is None else port
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "serve", "--host", HOST, "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_listening(port, process)
        base = f"http://{HOST}:{port}"
        yield (base, process.pid) if with_pid else base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(
    http: httpx.AsyncClient, host: HostSimulator, url: str, count: int
) -> list[float]:
    """Milliseconds from the speak request to the startSpeaking frame at the host."""
    samples: list[float] = []
    for index in range(count):
        text = f"probe {index} {secrets.token_hex(4)}"
        started = time.perf_counter()
        response = await http.post(url, json={"text": text})
        response.raise_for_status()
        while True:
            frame = await asyncio.wait_for(host.connection.recv(), 10)
            if text in str(frame):
                break
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def run(count: int) -> int:
    api_key = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as workdir, redis(workdir) as redis_url:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "JWT_PUBLIC_KEY": "bench-key",
            "JWT_PRIVATE_KEY": secrets.token_urlsafe(48),
            "REDIS_URL": redis_url,
            "ORCHESTRATOR_API_KEY": api_key,
            "LOG_LEVEL": "warning",
            "TOKEN_RATE_LIMIT": "10000000/second",
            "CONTROL_MAX_FRAMES_PER_SECOND": "100000",
        }
        with server(env) as a, server(env) as b:
            headers = {"Authorization": f"Bearer {api_key}"}
            async with httpx.AsyncClient(headers=headers, timeout=10) as http:
                issued = (await http.get(f"{a}/api/jwt")).json()
                sid = issued["session_id"]
                control = b.replace("http://", "ws://") + "/ws"
                async with HostSimulator.connect(control, issued["jwt"]) as host:
                    await host.start(settle=0.2)
                    warm = max(5, count // 10)
                    await measure(http, host, f"{b}/sessions/{sid}/speak", warm)
                    await measure(http, host, f"{a}/sessions/{sid}/speak", warm)
                    local = await measure(http, host, f"{b}/sessions/{sid}/speak", count)
                    routed = await measure(http, host, f"{a}/sessions/{sid}/speak", count)
    print(
        f"speak -> startSpeaking, {count} commands each, loopback; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"{'path':<28} {'p50 ms':>8} {'p99 ms':>8}")
    for label, samples in (("same instance (reference)", local), ("A -> Redis -> B", routed)):
        print(f"{label:<28} {statistics.median(samples):8.2f} {percentile(samples, 0.99):8.2f}")
    ratio = statistics.median(routed) / statistics.median(local)
    print(f"cross-instance p50 is {ratio:.2f}x the same-instance p50")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="speak commands per path")
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    args = parser.parse_args(argv)
    return asyncio.run(run(10 if args.quick else args.n))


if __name__ == "__main__":
    raise SystemExit(main())
