"""A throw-away ``redis-server`` for tests: free loopback port, no persistence.

Skips when ``redis-server`` is not on PATH, unless ``REQUIRE_REDIS=1`` (then
fails), so CI can insist on the Redis-backed tests running.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.live_server import free_port

STARTUP_TIMEOUT_SECONDS = 10.0


def _wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start in time")


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("REQUIRE_REDIS=1 but redis-server is not on PATH")
        pytest.skip("redis-server is not on PATH")
    return binary


class RestartableRedis:
    """A redis-server on a free loopback port that can be killed and started again
    on the same port (skips, or fails under ``REQUIRE_REDIS=1``, without the binary)."""

    def __init__(self, workdir: Path) -> None:
        self.binary = _redis_binary()
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_until_listening(self.port, self.process)

    def kill(self) -> None:
        """Stop it at once (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        """Stop it gracefully (SIGTERM), then by force."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """Run ``redis-server`` in ``workdir``; yield its ``redis://`` URL; stop it afterwards."""
    server = RestartableRedis(workdir)
    try:
        server.start()
        yield server.url
    finally:
        server.stop()
