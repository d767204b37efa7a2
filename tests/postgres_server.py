"""A throw-away PostgreSQL cluster for tests: its own data directory, a free
loopback port, trust authentication, no fsync.

Uses Debian's ``postgresql`` binaries (``/usr/lib/postgresql/*/bin``, or
``initdb`` on PATH). As root, the cluster runs as the ``postgres`` user
(``initdb`` refuses root). Skips when the binaries are missing, unless
``REQUIRE_POSTGRES=1`` (then fails), so CI can insist on the PostgreSQL runs.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.live_server import free_port

STARTUP_TIMEOUT_SECONDS = 30.0


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail("REQUIRE_POSTGRES=1 but PostgreSQL (initdb) is not installed")
        pytest.skip("PostgreSQL (initdb) is not installed")
    return Path(initdb).parent


def _run_as() -> dict[str, Any]:
    """Popen arguments that drop root to the ``postgres`` user (or nothing)."""
    if os.geteuid() != 0:
        return {}
    user = pwd.getpwnam("postgres")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


class RestartablePostgres:
    """A PostgreSQL cluster on a free loopback port that can crash and start again."""

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.as_user = _run_as()
        # Not under pytest's tmp_path: its parents are private to root.
        self.datadir = Path(tempfile.mkdtemp(prefix="orchestrator-pg-"))
        if self.as_user:
            os.chown(self.datadir, self.as_user["user"], self.as_user["group"])
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        subprocess.run(
            [self.bin / "initdb", "-D", self.datadir, "-U", "postgres", "--auth=trust",
             "--no-sync", "-E", "UTF8", "--locale=C"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **self.as_user,
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.bin / "postgres", "-D", self.datadir, "-p", str(self.port), "-k", self.datadir,
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **self.as_user,
        )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with code {self.process.returncode}")
            ready = subprocess.run(
                [self.bin / "pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-q"],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not start in time")

    def kill(self) -> None:
        """Stop at once, as a crash would (SIGQUIT: immediate shutdown, recovery on start)."""
        self._signal(signal.SIGQUIT)

    def stop(self) -> None:
        self._signal(signal.SIGINT)  # fast shutdown

    def remove(self) -> None:
        self.kill()
        shutil.rmtree(self.datadir, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        subprocess.run(
            [self.bin / "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
             name],
            check=True,
        )  # fmt: skip
        return self.url(name)

    def _signal(self, signum: int) -> None:
        if self.process is not None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def wait_until_port_free(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.05)


@contextmanager
def postgres_server() -> Iterator[RestartablePostgres]:
    """A started cluster, removed afterwards."""
    server = RestartablePostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()
