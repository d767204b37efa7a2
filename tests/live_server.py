"""A real ``orchestrator serve`` in a subprocess, for end-to-end tests.

Usage::

    with LiveServer(env={"JWT_PUBLIC_KEY": "k", "JWT_PRIVATE_KEY": secret}) as server:
        httpx.get(server.base_url + "/healthz")
        ...  # websockets.sync.client.connect(server.ws_url + "?access_token=...")
    assert secret not in server.log_text

The server runs the worktree's code (``cwd`` and ``PYTHONPATH`` are the
repository root) on a free loopback port. It is hermetic: every configuration
variable the app reads is blanked unless ``env`` sets it, so neither the
caller's environment nor a developer's ``.env`` leaks in. Its output (stdout
and stderr: the whole log) goes to a temporary file, readable at any time as
``log_text``, and kept in memory once the server stops. Leaving the block stops
it with SIGTERM, then SIGKILL after ``stop_timeout`` seconds. ``open_file_limit``
lowers the server's ``RLIMIT_NOFILE`` (``ulimit -n``), to reach it in a test.
"""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

import httpx

from orchestrator.config import VARIABLES

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"

# Every variable the settings read (the table); blanked unless the test sets it
# (the settings treat an empty value as unset, and the environment wins over .env).
CONFIG_VARIABLES = tuple(variable.name for variable in VARIABLES)


class ServerFailedToStart(RuntimeError):
    """The server exited or never answered ``/healthz``; the message holds its log."""


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def server_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The subprocess environment: ours, config blanked, repo on the path, ``env`` on top."""
    result = dict(os.environ)
    result.update({name: "" for name in CONFIG_VARIABLES})
    # The development default would write into the user's own archive.
    result["ARCHIVE_URL"] = "none"
    pythonpath = result.get("PYTHONPATH", "")
    result["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), pythonpath) if p)
    result.update(env or {})
    return result


class LoopbackServer:
    """The URLs of a test server listening on ``127.0.0.1:port``."""

    port: int

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, for HTTP requests."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def ws_base_url(self) -> str:
        """``ws://127.0.0.1:PORT``, for WebSocket paths other than the control socket."""
        return f"ws://{LOOPBACK}:{self.port}"

    @property
    def ws_url(self) -> str:
        """The control socket, ``ws://127.0.0.1:PORT/ws`` (what development tokens name)."""
        return f"{self.ws_base_url}/ws"

    def stop(self) -> None:
        raise NotImplementedError

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LiveServer(LoopbackServer):
    """``orchestrator serve`` on a free loopback port; a context manager."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        extra_args: tuple[str, ...] = (),
        start_timeout: float = 20.0,
        stop_timeout: float = 10.0,
        open_file_limit: int | None = None,
    ) -> None:
        self.env = server_environment(env)
        self.open_file_limit = open_file_limit
        self.extra_args = extra_args
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._final_log = ""
        self.killed = False

    @property
    def log_text(self) -> str:
        """Everything the server has logged so far (after ``stop()``: all of it)."""
        if self._log is None:
            return self._final_log
        return Path(self._log.name).read_text("utf-8", errors="replace")

    @property
    def returncode(self) -> int | None:
        """The exit status once stopped, else ``None``.

        After a graceful SIGTERM shutdown uvicorn re-raises the signal, so this is
        ``-SIGTERM``; ``killed`` says whether SIGKILL was needed instead.
        """
        return None if self.process is None else self.process.poll()

    def start(self) -> LiveServer:
        """Start the server and wait until ``/healthz`` answers (retrying a taken port)."""
        for _attempt in range(3):
            self._spawn()
            try:
                self._wait_until_healthy()
                return self
            except ServerFailedToStart:
                log = self.log_text
                self.stop()
                if "address already in use" not in log.lower():
                    raise
        raise ServerFailedToStart("no free port after 3 attempts")

    def stop(self) -> None:
        """SIGTERM, wait up to ``stop_timeout``, then SIGKILL; keeps the log; idempotent."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                process.kill()
                process.wait()
        if self._log is not None:
            self._final_log = self.log_text
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
            self._log = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def _spawn(self) -> None:
        self._final_log = ""
        self.killed = False
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix="orchestrator-live-", suffix=".log", delete=False
        )
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "orchestrator",
            "serve",
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=None if self.open_file_limit is None else self._limit_open_files,
        )

    def _limit_open_files(self) -> None:
        """In the child, before exec: the soft open-file limit (the hard one stays)."""
        assert self.open_file_limit is not None
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_file_limit, hard))

    def _wait_until_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailedToStart(
                    f"server exited with {self.process.returncode}:\n{self.log_text}"
                )
            try:
                if httpx.get(self.base_url + "/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise ServerFailedToStart(
            f"no answer on /healthz within {self.start_timeout} s:\n{self.log_text}"
        )
