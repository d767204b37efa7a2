"""The real app plus one constant route: the endpoint benchmark's reference.

``configured_app`` is ``orchestrator.asgi.configured_app`` (settings from the
environment, logging, ``create_app``) with ``GET /bench/constant`` appended: a
JSON body of the same shape and size as ``/api/jwt``'s, rendered once. Both
routes therefore run through the same process, middleware, logging and
uvicorn settings, and differ only in the handler.

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

from orchestrator.asgi import configured_app as orchestrator_app
from tokens.http import NO_STORE

CONSTANT_PATH = "/bench/constant"
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


async def constant(_request: Request) -> Response:
    return Response(_CONSTANT_BODY, media_type="application/json", headers=NO_STORE)


def configured_app() -> Starlette:
    """The orchestrator's app, as ``orchestrator serve`` builds it, plus the constant route."""
    app = orchestrator_app()
    app.router.routes.append(Route(CONSTANT_PATH, constant, methods=["GET"]))
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
