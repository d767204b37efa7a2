"""Stand-ins for what a handler talks to, as real HTTP servers on loopback.

``FakeModel`` is an OpenAI-compatible chat API that answers from a script
(text and tool calls, streamed as server-sent events like the real API), so
the real ``openai`` client and the real ``llm`` handler run without spending
tokens. ``FakeBackend`` is a webhook backend whose replies a function writes;
it checks every request's signature as a real backend should. Each serves
from a thread of its own (uvicorn), so they work from sync and async tests
alike: ``with FakeModel([...]) as model:``, then ``model.settings()``.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from orchestrator.config import Settings
from orchestrator.handlers.signing import SIGNATURE_HEADER, SignatureError, verify_signature

START_SECONDS = 10.0


class LoopbackServer:
    """An ASGI app served by uvicorn on ``127.0.0.1`` (a free port) in a thread."""

    def __init__(self, app: Starlette) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, access_log=False, ws="none",
            lifespan="off",
        )  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base_url = ""

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + START_SECONDS
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the loopback server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=START_SECONDS)


class _Served:
    """``with`` / ``async with`` start and stop the server."""

    server: LoopbackServer

    def __enter__(self) -> Any:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()


# --- the model ------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    """A function call the model makes: ``arguments`` as a mapping (or JSON text)."""

    name: str
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        args = self.arguments
        return args if isinstance(args, str) else json.dumps(dict(args))


@dataclass(frozen=True)
class ModelAnswer:
    """One scripted answer: text (streamed word by word) and/or tool calls.

    After tool calls, the handler asks again with their results: script the
    answer that follows as the next ``ModelAnswer``.
    """

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()

    @classmethod
    def of(cls, item: ModelAnswer | str) -> ModelAnswer:
        return item if isinstance(item, ModelAnswer) else cls(item)


class FakeModel(_Served):
    """An OpenAI-compatible ``/v1/chat/completions`` answering from ``script``, in order.

    ``requests`` holds every request body received (``messages``, ``tools``...).
    A request past the end of the script is answered HTTP 500, so an unexpected
    call shows (the ``llm`` handler says its apology).
    """

    def __init__(self, script: Iterable[ModelAnswer | str] = (), *, model: str = "scripted"):
        self.model = model
        self.script = [ModelAnswer.of(item) for item in script]
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/v1/chat/completions", self._answer, methods=["POST"])])
        self.server = LoopbackServer(app)

    @property
    def base_url(self) -> str:
        """What ``LLM_BASE_URL`` (or ``JUDGE_BASE_URL``) should be."""
        return f"{self.server.base_url}/v1"

    def settings(self, **overrides: Any) -> Settings:
        """Settings for ``CONVERSATION_HANDLER=llm`` against this model (``overrides``
        are ``Settings`` fields, e.g. ``llm_system_prompt=...``)."""
        values: dict[str, Any] = {
            "conversation_handler": "llm",
            "llm_base_url": self.base_url,
            "llm_model": self.model,
        }
        return Settings(**{**values, **overrides})

    def messages(self, index: int = -1) -> list[dict[str, Any]]:
        """The ``messages`` of request ``index`` (default: the last)."""
        messages: list[dict[str, Any]] = self.requests[index]["messages"]
        return messages

    async def _answer(self, request: Request) -> Response:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
            answer = self.script.pop(0) if self.script else None
        if answer is None:
            error = {"message": "the scripted model has no answer left", "type": "fake_model"}
            return JSONResponse({"error": error}, status_code=500)
        model = str(body.get("model", self.model))
        if body.get("stream"):
            return StreamingResponse(_events(model, answer), media_type="text/event-stream")
        return JSONResponse(_completion(model, answer))


async def _events(model: str, answer: ModelAnswer) -> AsyncIterator[str]:
    finish = "tool_calls" if answer.tool_calls else "stop"
    for event in sse_stream(model, _deltas(answer), finish):
        yield event


def _deltas(answer: ModelAnswer) -> list[dict[str, Any]]:
    deltas = content_deltas(words(answer.text))
    for index, call in enumerate(answer.tool_calls):
        call_id = call.id or f"call_{index + 1}"
        deltas.append(tool_call_delta(index, call_id, call.name, call.arguments_json()))
    return deltas


def _completion(model: str, answer: ModelAnswer) -> dict[str, Any]:
    calls = [
        tool_call(call.id or f"call_{index + 1}", call.name, call.arguments_json())
        for index, call in enumerate(answer.tool_calls)
    ]
    return completion(model, answer.text, calls)


# --- the OpenAI wire format (pure; tests/fake_openai.py serves it too) ----------------

DONE = "data: [DONE]\n\n"


def sse(payload: Mapping[str, Any]) -> str:
    """One server-sent event: ``data: {json}`` and a blank line."""
    return f"data: {json.dumps(payload)}\n\n"


def chunk(model: str, delta: Mapping[str, Any], finish: str | None = None) -> dict[str, Any]:
    """A ``chat.completion.chunk`` carrying ``delta`` (and ``finish_reason``)."""
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish}],
    }


def sse_stream(model: str, deltas: Iterable[Mapping[str, Any]], finish: str) -> list[str]:
    """A whole stream's events: a chunk per delta, the finishing chunk, ``[DONE]``."""
    return [sse(chunk(model, delta)) for delta in deltas] + [sse(chunk(model, {}, finish)), DONE]


def words(text: str) -> list[str]:
    """``text`` as a stream's content pieces: word by word, each space kept."""
    return (
        [word if i == 0 else f" {word}" for i, word in enumerate(text.split(" "))] if text else []
    )


def content_deltas(pieces: Iterable[str]) -> list[dict[str, Any]]:
    """The assistant's role, then one delta per content piece."""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    return deltas + [{"content": piece} for piece in pieces]


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """A ``function`` tool call (``arguments``: JSON text)."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_call_delta(index: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """The delta that opens tool call ``index`` (with all or the first of its arguments)."""
    return {"tool_calls": [{"index": index, **tool_call(call_id, name, arguments)}]}


def completion(model: str, text: str, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
    """A whole (non-streamed) ``chat.completion``: ``text`` and/or ``tool_calls``."""
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    finish = "tool_calls" if tool_calls else "stop"
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


# --- the webhook backend --------------------------------------------------------------

Replier = Callable[[dict[str, Any]], Mapping[str, Any] | None]


class FakeBackend(_Served):
    """A webhook backend: ``reply(payload)`` writes each turn's reply (docs/webhook.md's
    shape: ``text``, ``cards``, ``variables``, ``fallback``, ``speak``; ``None``: say
    nothing). Session events are recorded and answered empty.

    ``received`` holds every payload whose signature checked out, turns and
    events alike; a request with a bad signature is answered 401 and counted in
    ``refused``.
    """

    def __init__(self, reply: Replier | None = None, *, secret: str | None = None) -> None:
        self.reply = reply or _echo
        self.secret = secret or secrets.token_urlsafe(32)
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/webhook", self._answer, methods=["POST"])])
        self.server = LoopbackServer(app)

    @property
    def url(self) -> str:
        """What ``WEBHOOK_URL`` should be."""
        return f"{self.server.base_url}/webhook"

    @property
    def turns(self) -> list[dict[str, Any]]:
        return [payload for payload in self.received if payload.get("type") == "turn"]

    def settings(self, **overrides: Any) -> Settings:
        """Settings for ``CONVERSATION_HANDLER=webhook`` against this backend."""
        values: dict[str, Any] = {
            "conversation_handler": "webhook",
            "webhook_url": self.url,
            "webhook_secret": self.secret,
        }
        return Settings(**{**values, **overrides})

    async def _answer(self, request: Request) -> Response:
        raw = await request.body()
        try:
            verify_signature(self.secret, request.headers.get(SIGNATURE_HEADER), raw)
        except SignatureError:
            with self._lock:
                self.refused += 1
            return JSONResponse({"error": "bad signature"}, status_code=401)
        payload = json.loads(raw)
        with self._lock:
            self.received.append(payload)
        if payload.get("type") != "turn":
            return Response(status_code=204)
        reply = self.reply(payload)
        if reply is None:
            return Response(status_code=204)
        return JSONResponse(dict(reply))


def _echo(payload: dict[str, Any]) -> dict[str, Any]:
    if payload.get("is_init"):
        return {"text": "Hello from the fake backend."}
    return {"text": f"The backend heard: {payload.get('text', '')}"}
