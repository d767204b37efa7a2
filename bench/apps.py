"""The real app plus one constant route: the endpoint benchmark's reference.

``configured_app`` is ``orchestrator.asgi.configured_app`` (settings from the
environment, logging, ``create_app``) with two routes appended:

- ``GET /bench/constant``: a JSON body of the same shape and size as
  ``/api/jwt``'s, rendered once. It is added to the per-IP rate limiter's
  paths, so both routes run through the same process, middleware (CORS and the
  token-route limiter), logging and uvicorn settings, and differ only in the
  handler.
- ``WebSocket /bench/echo-ws``: accepts any client and answers every frame
  with one fixed ``conversationResponse`` (the shape the default handler sends
  for "hello there"): the floor for the conversation round-trip benchmark.

``python -m bench.apps [serve options]`` runs ``orchestrator serve`` unchanged
except for the app it hands to uvicorn, so the uvicorn settings cannot drift
from the CLI's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.websockets import WebSocket, WebSocketDisconnect

from orchestrator.asgi import configured_app as orchestrator_app
from orchestrator.control import protocol
from orchestrator.control.endpoint import ControlSocketRoutes
from orchestrator.http.rate_limit import RateLimitMiddleware
from tokens.web.http import NO_STORE

CONSTANT_PATH = "/bench/constant"
JWT_PATH = "/api/jwt"
ECHO_WS_PATH = "/bench/echo-ws"
ORCHESTRATOR_FACTORY = "orchestrator.asgi:configured_app"
BENCH_FACTORY = "bench.apps:configured_app"

# Shaped and sized like a real /api/jwt body (~530 bytes), but constant.
_CONSTANT_BODY = json.dumps(
    {
        "url": "wss://dh.soulmachines.cloud",
        "jwt": "x" * 420,
        "expires_at": 1_700_000_000,
        "session_id": "y" * 22,
    },
    separators=(",", ":"),
).encode()


# What the default handler answers to wsload's "hello there", transaction and all.
_ECHO_REPLY = protocol.Envelope(
    "request",
    "conversationResponse",
    {"input": {"text": "hello there"}, "output": {"text": "You said: hello there"}},
    "orch-1",
).to_json()


async def constant(_request: Request) -> Response:
    return Response(_CONSTANT_BODY, media_type="application/json", headers=NO_STORE)


async def echo_ws(websocket: WebSocket) -> None:
    """One fixed ``conversationResponse`` per frame received, until the peer closes."""
    await websocket.accept()
    try:
        while True:
            await websocket.receive_text()
            await websocket.send_text(_ECHO_REPLY)
    except WebSocketDisconnect:
        pass


def configured_app() -> Starlette:
    """The orchestrator's app, as ``orchestrator serve`` builds it, plus the bench routes."""
    app = orchestrator_app()
    # Right after /api/jwt, so routing finds both after the same number of
    # routes (appended last, the reference would pay ~20 more route matches).
    jwt_index = next(
        i for i, route in enumerate(app.router.routes) if getattr(route, "path", None) == JWT_PATH
    )
    app.router.routes.insert(jwt_index + 1, Route(CONSTANT_PATH, constant, methods=["GET"]))
    # Served where the control socket is (ahead of the HTTP middleware), so the
    # reference and the real route differ only in the handler.
    control_routes = [m for m in app.user_middleware if m.cls is ControlSocketRoutes]
    if len(control_routes) != 1:
        raise RuntimeError("expected one ControlSocketRoutes on the app; update bench/apps.py")
    control_routes[0].kwargs["routes"][ECHO_WS_PATH] = echo_ws
    limiters = [m for m in app.user_middleware if m.cls is RateLimitMiddleware]
    if len(limiters) != 1:
        raise RuntimeError("expected one RateLimitMiddleware on the app; update bench/apps.py")
    # The stack is built on the first request, so the limiter sees this path too.
    limiters[0].kwargs["paths"] = [*limiters[0].kwargs["paths"], CONSTANT_PATH]
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """``orchestrator serve ARGS`` serving :func:`configured_app` instead."""
    import uvicorn

    from orchestrator import cli

    real_run = uvicorn.run

    def run(app: Any, **kwargs: Any) -> None:
        if app != ORCHESTRATOR_FACTORY:
            raise RuntimeError(f"orchestrator serve now runs {app!r}; update bench/apps.py")
        real_run(BENCH_FACTORY, **kwargs)

    uvicorn.run = run
    return cli.main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
