"""A real uvicorn server on a loopback port, in a thread of the test process,
so a test can drive it over real sockets and still look at the app's state.

It runs the same HTTP and WebSocket stack as ``orchestrator serve``, with the limits
of the app's own settings (the defaults for an app not made by ``create_app``)."""

from __future__ import annotations

import threading
import time

import uvicorn
from starlette.applications import Starlette

from orchestrator.config import Settings
from orchestrator.server.heads import uvicorn_http_options
from orchestrator.server.websocket import uvicorn_websocket_options
from tests.live_server import LoopbackServer, free_port


class ThreadedServer(LoopbackServer):
    """``with ThreadedServer(app) as server:`` serves ``app`` at ``server.base_url``."""

    def __init__(self, app: Starlette, *, graceful_seconds: int = 5) -> None:
        self.app = app
        self.port = free_port()
        # The WebSocket limits of the app's own settings (create_app), else the defaults.
        settings = getattr(app.state, "settings", None)
        if not isinstance(settings, Settings):
            settings = Settings()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_config=None,
            **uvicorn_http_options(settings),
            **uvicorn_websocket_options(settings),
            lifespan="on",
            timeout_graceful_shutdown=graceful_seconds,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Ask uvicorn to shut down as on SIGTERM, and wait for it."""
        self.server.should_exit = True
        self.thread.join(timeout=15)
