"""Liveness (``/healthz``, the vendor samples' ``/ping``) and readiness (``/readyz``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

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


def readiness_route(
    backend_name: str,
    check: Callable[[], Awaitable[None]],
    archive_status: Callable[[], dict[str, Any]] | None = None,
) -> Route:
    """``/readyz``: 200 when the session backend answers, 503 (with the reason) when not.

    The archive's state is reported beside it but never makes the instance
    unready: conversations go on while its database is away (they queue)."""

    def archive() -> dict[str, Any]:
        return {} if archive_status is None else {"archive": archive_status()}

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
                    **archive(),
                },
                status_code=503,
                headers=NO_STORE,
            )
        return JSONResponse(
            {"status": "ready", "backend": backend_name, **archive()}, headers=NO_STORE
        )

    return Route("/readyz", readyz, methods=["GET"])
