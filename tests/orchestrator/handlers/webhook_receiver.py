"""A webhook backend for tests: a real HTTP server (uvicorn in a thread) that
checks every signature with the package's helper, records what it received,
and answers what the test scripted (good replies, bad JSON, errors, slow,
huge, compressed, redirects)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from orchestrator.handlers.signing import (
    SIGNATURE_HEADER,
    ReplayGuard,
    SignatureError,
    verify_signature,
)
from tests.uvicorn_thread import ThreadedServer


@dataclass(frozen=True)
class Answer:
    """What the receiver answers: a status, a body (``json`` or raw), optional delay."""

    status: int = 200
    json: Any = None
    body: bytes = b""
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    stream_bytes: int = 0  # > 0: a chunked body of that many bytes, no Content-Length
    chunked: bytes = b""  # sent as a chunked body in 64 KiB pieces, no Content-Length

    def response(self) -> Response:
        if self.chunked:

            async def pieces() -> AsyncIterator[bytes]:
                for start in range(0, len(self.chunked), 64 * 1024):
                    yield self.chunked[start : start + 64 * 1024]

            return StreamingResponse(pieces(), status_code=self.status, headers=self.headers)
        if self.stream_bytes:

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(self.stream_bytes // 4096):
                    yield b" " * 4096

            return StreamingResponse(chunks(), status_code=self.status, headers=self.headers)
        content = json.dumps(self.json).encode() if self.json is not None else self.body
        media = "application/json" if self.json is not None else None
        return Response(content, self.status, headers=self.headers, media_type=media)


@dataclass(frozen=True)
class Received:
    """One request as the backend saw it."""

    path: str
    event: str | None
    payload: Any
    raw: bytes
    signature: str | None
    verdict: str  # "ok" or the SignatureError reason
    accept_encoding: str = ""


Script = Callable[[Received], Answer]


def echo(received: Received) -> Answer:
    """The default turn reply: what a minimal backend says (nothing to an event)."""
    payload = received.payload
    if received.event != "turn":
        return Answer(204)
    if payload.get("is_init"):
        return Answer(json={"text": "Welcome from the backend."})
    return Answer(json={"text": f"Backend heard: {payload['text']}"})


class WebhookReceiver(ThreadedServer):
    """``with WebhookReceiver(secret) as backend:`` a backend at ``backend.turn_url``."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.guard = ReplayGuard()
        self.received: list[Received] = []
        self.turn_script: Script = echo
        self.event_script: Script = lambda _received: Answer(204)
        # Requests being answered now, and the most at once, per session id.
        self.in_flight: dict[str, int] = {}
        self.most_in_flight: dict[str, int] = {}
        super().__init__(
            Starlette(
                routes=[
                    Route("/turn", self._turn, methods=["POST"]),
                    Route("/events", self._event, methods=["POST"]),
                    Route("/elsewhere", self._turn, methods=["POST", "GET"]),
                ]
            )
        )
        # The port is chosen above, so the routes' URLs are fixed from here on.
        self.turn_url = f"{self.base_url}/turn"
        self.events_url = f"{self.base_url}/events"

    def of(self, event: str) -> list[Received]:
        """What arrived for ``event`` (``turn``, ``session.started``, ...)."""
        return [item for item in self.received if item.event == event]

    def wait_for(self, event: str, count: int = 1, timeout: float = 5.0) -> list[Received]:
        """Block until ``count`` requests for ``event`` arrived (they come from the server)."""
        deadline = time.monotonic() + timeout
        while len(self.of(event)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} {event} request(s) expected, got {self.received}")
            time.sleep(0.01)
        return self.of(event)

    async def _record(self, request: Request) -> Received:
        raw = await request.body()
        signature = request.headers.get(SIGNATURE_HEADER)
        try:
            verify_signature(self.secret, signature, raw, replay_guard=self.guard)
            verdict = "ok"
        except SignatureError as exc:
            verdict = exc.reason
        received = Received(
            request.url.path,
            request.headers.get("Orchestrator-Event"),
            json.loads(raw) if raw else None,
            raw,
            signature,
            verdict,
            request.headers.get("Accept-Encoding", ""),
        )
        self.received.append(received)
        return received

    async def _answer(self, request: Request, script: Script) -> Response:
        received = await self._record(request)
        if received.verdict != "ok":
            return Response(status_code=401)
        answer = script(received)
        session_id = str((received.payload or {}).get("session_id"))
        self.in_flight[session_id] = now = self.in_flight.get(session_id, 0) + 1
        self.most_in_flight[session_id] = max(self.most_in_flight.get(session_id, 0), now)
        try:
            if answer.delay:
                await asyncio.sleep(answer.delay)
            return answer.response()
        finally:
            self.in_flight[session_id] -= 1

    async def _turn(self, request: Request) -> Response:
        return await self._answer(request, self.turn_script)

    async def _event(self, request: Request) -> Response:
        return await self._answer(request, self.event_script)
