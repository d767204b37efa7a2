"""Liveness (``/healthz``, the vendor samples' ``/ping``) and readiness (``/readyz``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orchestrator.sessions.store import StoreUnavailable
from tokens.web.http import NO_STORE


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/ping", healthz, methods=["GET"]),
]


def readiness_route(backend_name: str, check: Callable[[], Awaitable[None]]) -> Route:
    """``/readyz``: 200 when the session backend answers, 503 (with the reason) when not."""

    async def readyz(_request: Request) -> JSONResponse:
        try:
            await check()
        except StoreUnavailable as exc:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "backend": backend_name,
                    "error": "store_unavailable",
                    "detail": f"session store unreachable: {exc}",
                },
                status_code=503,
                headers=NO_STORE,
            )
        return JSONResponse({"status": "ready", "backend": backend_name}, headers=NO_STORE)

    return Route("/readyz", readyz, methods=["GET"])
