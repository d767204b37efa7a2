"""Liveness endpoints: ``/healthz`` and the vendor samples' ``/ping``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/ping", healthz, methods=["GET"]),
]
