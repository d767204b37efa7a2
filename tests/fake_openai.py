"""An OpenAI-compatible chat server for tests: the public wire format, over real HTTP.

``POST /v1/chat/completions`` answers with JSON, or with SSE (``data: {...}``
chunks, then ``data: [DONE]``) when the request says ``"stream": true``.
What it answers is scripted (``FakeOpenAI.script``: one ``Answer`` per request,
in order; an empty script echoes the user); it records every request it
received (body, headers and path) and whether a stream was closed by the
client before its end. ``/elsewhere/v1/chat/completions`` answers the same way:
a redirect's target, to see whether a client followed one. Nothing reaches the
internet.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from orchestrator.testing.fakes import (
    DONE,
    chunk,
    completion,
    content_deltas,
    sse,
    sse_stream,
    tool_call,
    tool_call_delta,
    words,
)
from tests.uvicorn_thread import ThreadedServer


@dataclass
class ToolCallPlan:
    name: str
    arguments: str  # JSON text, sent in fragments of ``fragment`` characters
    id: str = "call_1"
    fragment: int = 7


@dataclass
class Answer:
    """One scripted answer."""

    text: str = ""
    tool_calls: list[ToolCallPlan] = field(default_factory=list)
    pieces: list[str] | None = None  # the content deltas (default: word by word)
    delay: float = 0.0  # before each chunk
    status: int = 200
    error: dict[str, Any] | None = None  # the error body's "error" object
    raw: str | None = None  # sent as the SSE body verbatim (bad streams)
    hang: float = 0.0  # before the response's headers
    drop: bool = False  # the connection breaks after the content (no end, no [DONE])
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    body: bytes | None = None  # sent verbatim in 64 KiB pieces, no Content-Length (bombs)


@dataclass
class Received:
    body: dict[str, Any]
    headers: dict[str, str]
    path: str = "/v1/chat/completions"


class FakeOpenAI:
    """``with FakeOpenAI() as llm:`` serves at ``llm.base_url`` (``.../v1``)."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.received: list[Received] = []
        self.streams_closed_early = 0
        self.streams_completed = 0
        self.lock = threading.Lock()
        self.stream_started = threading.Event()
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.completions, methods=["POST"]),
                Route("/elsewhere/v1/chat/completions", self.completions, methods=["POST"]),
            ]
        )
        self.server = ThreadedServer(app)

    @property
    def base_url(self) -> str:
        return f"{self.server.base_url}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def messages(self, index: int = -1) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.received[index].body["messages"]
        return messages

    async def completions(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            self.received.append(Received(body, dict(request.headers), request.url.path))
            answer = self.script.pop(0) if self.script else None
        if answer is None:
            user = next(m for m in reversed(body["messages"]) if m["role"] == "user")
            answer = Answer(f"You said: {user['content']}.")
        if answer.hang:
            await asyncio.sleep(answer.hang)
        if answer.body is not None:
            return StreamingResponse(
                _pieces(answer.body), answer.status, answer.headers, "text/event-stream"
            )
        if answer.error is not None or answer.status != 200:
            return JSONResponse(
                {"error": answer.error}, status_code=answer.status, headers=answer.headers
            )
        if not body.get("stream"):
            return JSONResponse(_completion(body["model"], answer))
        return StreamingResponse(
            self._events(body["model"], answer), media_type="text/event-stream"
        )

    async def _events(self, model: str, answer: Answer) -> AsyncIterator[str]:
        completed = False
        self.stream_started.set()
        try:
            if answer.raw is not None:
                yield answer.raw
                completed = True
                return
            for delta in _deltas(answer):
                if answer.delay:
                    await asyncio.sleep(answer.delay)
                yield sse(chunk(model, delta))
            if answer.drop:
                raise ConnectionAbortedError("the fake server drops the stream")
            finish = "tool_calls" if answer.tool_calls else "stop"
            yield sse(chunk(model, {}, finish))
            yield DONE
            completed = True
        finally:
            with self.lock:
                if completed:
                    self.streams_completed += 1
                else:
                    self.streams_closed_early += 1


async def _pieces(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 64 * 1024):
        yield body[start : start + 64 * 1024]


def sse_body(deltas: list[dict[str, Any]], model: str = "test-model") -> bytes:
    """A whole stream of ``deltas`` (then a stop and ``[DONE]``), for ``Answer(body=...)``."""
    return "".join(sse_stream(model, deltas, "stop")).encode()


def _deltas(answer: Answer) -> list[dict[str, Any]]:
    deltas = content_deltas(words(answer.text) if answer.pieces is None else answer.pieces)
    for index, call in enumerate(answer.tool_calls):
        deltas.append(tool_call_delta(index, call.id, call.name, ""))
        for start in range(0, len(call.arguments), call.fragment):
            fragment = call.arguments[start : start + call.fragment]
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
    return deltas


def _completion(model: str, answer: Answer) -> dict[str, Any]:
    calls = [tool_call(c.id, c.name, c.arguments) for c in answer.tool_calls]
    return completion(model, answer.text, calls)


MENU_CARD = {"id": "menu", "component": "markdown", "data": {"text": "**Menu**"}}


def card_and_variable_script(text: str) -> list[Answer]:
    """A model that shows ``MENU_CARD`` and sets ``city=Paris``, then says ``text``."""
    return [
        Answer(
            tool_calls=[
                ToolCallPlan("show_card", json.dumps(MENU_CARD), id="c1"),
                ToolCallPlan("set_variable", '{"name": "city", "value": "Paris"}', id="c2"),
            ]
        ),
        Answer(text),
    ]
