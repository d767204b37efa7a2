"""The sessions API: the UI and the backend read and steer one session.

Auth: the UI presents the very token it got from ``/api/jwt`` (``Bearer``) and
may touch only its own session; the backend presents ``ORCHESTRATOR_API_KEY``
and may touch all. ``GET /sessions/{id}/events`` also takes the token as
``?access_token=`` because a browser's EventSource cannot set headers; its
streams are capped (see ``event_streams``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, NoReturn

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.archive.writer import ArchiveWriter
from orchestrator.control.commands import (
    CommandFailed,
    CommandRouter,
    SessionNotLive,
    execute_stored,
)
from orchestrator.http.event_streams import (
    REASONS,
    EventStreamResponse,
    StreamCaps,
    StreamRefused,
    StreamSlots,
)
from orchestrator.metrics import Metrics
from orchestrator.sessions.events import EventHub
from orchestrator.sessions.model import (
    Session,
    VariablesRefused,
    VariableWriter,
    merge_variables,
)
from orchestrator.sessions.store import SessionStore, StoreUnavailable
from tokens import InvalidTokenError, SoulMachinesProfile
from tokens.jsonsafe import dumps
from tokens.web.auth import ApiKeys, presented_token
from tokens.web.errors import ErrorTable
from tokens.web.http import NO_STORE, ApiError, SafeJSONResponse, read_json_object

MAX_TEXT_CHARS = 4000
KEEPALIVE_SECONDS = 15.0
ENDED_GRACE_SECONDS = 1.0

# The orchestrator's own errors as HTTP answers (see tokens.web.errors), for the
# app's exception handlers; the endpoints raise, they never catch to answer.
SESSIONS_API_ERRORS: ErrorTable = {
    StoreUnavailable: lambda error: ApiError(
        503, "store_unavailable", f"session store unreachable: {error}"
    ),
    CommandFailed: lambda error: ApiError(504, "instance_timeout", str(error)),
}


@dataclass(frozen=True)
class Caller:
    """Who is calling: the backend (all sessions) or one session's UI."""

    backend: bool
    session_id: str | None = None
    expires_at: int | None = None  # the UI token's ``exp``; the API key has none

    def may_touch(self, session_id: str) -> bool:
        # Bytes: compare_digest raises TypeError for non-ASCII str (a path like /sessions/é).
        return self.backend or (
            self.session_id is not None
            and hmac.compare_digest(_utf8(self.session_id), _utf8(session_id))
        )


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


class SessionsApi:
    def __init__(
        self,
        *,
        store: SessionStore,
        router: CommandRouter,
        events: EventHub,
        profile: SoulMachinesProfile,
        api_keys: tuple[str, ...],
        stream_caps: StreamCaps,
        metrics: Metrics | None = None,
        archive: ArchiveWriter | None = None,
    ) -> None:
        self.store = store
        self.router = router
        self.events = events
        self.profile = profile
        self.api_keys = ApiKeys(api_keys)
        self.metrics = metrics
        self.archive = archive
        self.streams = StreamSlots(stream_caps)
        if metrics is not None:
            metrics.sse_streams_open.set_function(lambda: float(self.streams.open))
            for reason in REASONS:  # each shown from the start, at 0
                metrics.sse_streams_refused.labels(reason)

    def routes(self) -> list[Route]:
        return [
            Route("/sessions", self.list_sessions, methods=["GET"]),
            Route("/sessions/{session_id}", self.get_session, methods=["GET"]),
            Route("/sessions/{session_id}", self.end_session, methods=["DELETE"]),
            Route("/sessions/{session_id}/variables", self.patch_variables, methods=["PATCH"]),
            Route("/sessions/{session_id}/speak", self.speak, methods=["POST"]),
            Route("/sessions/{session_id}/stop-speaking", self.stop_speaking, methods=["POST"]),
            Route("/sessions/{session_id}/send", self.send, methods=["POST"]),
            Route("/sessions/{session_id}/events", self.follow, methods=["GET"]),
        ]

    # --- plumbing ------------------------------------------------------------------

    def caller(self, request: Request, *, query_token: bool = False) -> Caller:
        token, source = presented_token(request, query="access_token")
        if token is None:
            raise ApiError(401, "no_credentials", "send Authorization: Bearer <token or API key>")
        if source == "query" and not query_token:
            raise ApiError(401, "no_credentials", "send the token as Authorization: Bearer")
        if self.api_keys.matches(token):
            if source == "query":
                # URLs end up in proxy logs and browser history: keys go in headers.
                raise ApiError(401, "key_in_url", "send the API key as Authorization: Bearer")
            return Caller(backend=True)
        try:
            claims = self.profile.verify(token)
        except InvalidTokenError as exc:
            if self.metrics is not None:
                self.metrics.tokens_refused.labels("api", exc.code).inc()
            raise ApiError(401, exc.code, f"credentials refused: {exc}") from None
        return Caller(backend=False, session_id=claims.session_id, expires_at=claims.expires_at)

    async def session_for(self, request: Request, *, query_token: bool = False) -> Session:
        return await self._session(self.caller(request, query_token=query_token), request)

    async def _session(self, caller: Caller, request: Request) -> Session:
        session_id = request.path_params["session_id"]
        if not caller.may_touch(session_id):
            raise ApiError(403, "forbidden", "this token is for another session")
        session = await self.store.get(session_id)
        if session is None:
            raise ApiError(404, "not_found", "no such session (unknown or expired)")
        return session

    async def command(self, session: Session, op: str, args: dict[str, Any]) -> dict[str, Any]:
        if session.terminated:
            raise ApiError(409, "session_ended", "the session was ended")
        try:
            return await self.router.run(session.id, op, args)
        except SessionNotLive:
            raise ApiError(
                409, "not_connected", f"no live control socket for this session ({session.status})"
            ) from None

    # --- endpoints -----------------------------------------------------------------

    async def list_sessions(self, request: Request) -> Response:
        if not self.caller(request).backend:
            raise ApiError(403, "forbidden", "listing sessions needs the backend API key")
        sessions = await self.store.list()
        return SafeJSONResponse({"sessions": [summary(s) for s in sessions]})

    async def get_session(self, request: Request) -> Response:
        session = await self.session_for(request)
        return SafeJSONResponse(session.to_dict())

    async def end_session(self, request: Request) -> Response:
        session = await self.session_for(request)
        if session.terminated:
            return SafeJSONResponse({"id": session.id, "status": "ended"})
        try:
            await self.router.run(session.id, "terminate", {})
        except SessionNotLive:
            await execute_stored(self.store, self.events, session, "terminate", {})
            if self.archive is not None:  # no socket whose end would archive it
                self.archive.session_ended(session)
        await self.events.publish_event(session.id, "terminated", {})
        return SafeJSONResponse({"id": session.id, "status": "ended"})

    async def patch_variables(self, request: Request) -> Response:
        caller = self.caller(request)
        session = await self._session(caller, request)
        # The body is a JSON merge patch (RFC 7396) of the variables: null removes one.
        variables = await read_json_object(request)
        if session.terminated:
            raise ApiError(409, "session_ended", "the session was ended")
        # The backend's bound is the whole; a UI token's leaves the backend its headroom.
        writer = VariableWriter.BACKEND if caller.backend else VariableWriter.UI
        args = {"patch": variables, "writer": writer.value}
        try:
            # Checked here first (the record read above), then where the change is made.
            merge_variables(session.variables, variables, writer)
        except VariablesRefused as exc:
            self._refused(writer, str(exc))
        try:
            result = await self.router.run(session.id, "set_variables", args)
        except SessionNotLive:
            # Nobody holds the socket: change the record; the next connection sends them.
            result = await execute_stored(self.store, self.events, session, "set_variables", args)
        if "refused" in result:
            self._refused(writer, str(result["refused"]))
        return SafeJSONResponse(result)

    def _refused(self, writer: VariableWriter, reason: str) -> NoReturn:
        if self.metrics is not None:
            self.metrics.variables_refused.labels(writer.value).inc()
        raise ApiError(413, "too_large", reason)

    async def speak(self, request: Request) -> Response:
        session = await self.session_for(request)
        body = await read_json_object(request)
        text = _text(body)
        interruptible = body.get("can_be_interrupted", True)
        if not isinstance(interruptible, bool):
            raise ApiError(400, "invalid_body", "can_be_interrupted must be true or false")
        result = await self.command(
            session, "speak", {"text": text, "can_be_interrupted": interruptible}
        )
        return SafeJSONResponse(result, status_code=202)

    async def stop_speaking(self, request: Request) -> Response:
        session = await self.session_for(request)
        return SafeJSONResponse(await self.command(session, "stop_speaking", {}), status_code=202)

    async def send(self, request: Request) -> Response:
        session = await self.session_for(request)
        body = await read_json_object(request)
        text = _text(body)
        variables = body.get("variables", {})
        if variables is None:
            variables = {}
        fallback = body.get("fallback", False)
        if not isinstance(variables, dict) or not isinstance(fallback, bool):
            raise ApiError(400, "invalid_body", "variables must be an object, fallback a bool")
        args = {"text": text, "variables": variables, "fallback": fallback}
        return SafeJSONResponse(await self.command(session, "send", args), status_code=202)

    async def follow(self, request: Request) -> Response:
        caller = self.caller(request, query_token=True)
        session = await self._session(caller, request)
        deadline = None
        if caller.expires_at is not None:
            # A UI token's stream ends when the token expires: it grants no more.
            remaining = caller.expires_at - self.profile.codec.clock()
            deadline = asyncio.get_running_loop().time() + remaining
        # UI tokens are counted per address too (the one TRUSTED_PROXY_HOPS resolved).
        address = None
        if not caller.backend:
            address = request.client.host if request.client else "unknown"
        try:
            slot = self.streams.acquire(session.id, address, backend=caller.backend)
        except StreamRefused as refused:
            if self.metrics is not None:
                self.metrics.sse_streams_refused.labels(refused.reason).inc()
            raise refused.as_api_error() from None
        return EventStreamResponse(
            self._stream(session, deadline),
            slot,
            headers={**NO_STORE, "X-Accel-Buffering": "no"},
        )

    async def _stream(self, session: Session, deadline: float | None) -> AsyncGenerator[str, None]:
        """The session's events; ``deadline`` (event-loop time) ends the stream
        before any event it has not sent by then."""
        loop = asyncio.get_running_loop()

        def left(cap: float) -> float:
            # Seconds to wait for an event, at most ``cap``; <= 0 once past the deadline.
            return cap if deadline is None else min(cap, deadline - loop.time())

        async with self.events.subscribe(session.id) as queue:
            fresh = None
            with contextlib.suppress(StoreUnavailable):  # headers are sent: no 503 now
                fresh = await self.store.get(session.id)
            if left(1) <= 0:
                return
            yield sse("snapshot", (fresh or session).to_dict())
            while (timeout := left(KEEPALIVE_SECONDS)) > 0:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    if left(1) > 0:
                        yield ": keepalive\n\n"
                    continue
                if left(1) <= 0:
                    return
                yield sse(event.type, event.to_dict())
                if event.type == "terminated":
                    # The socket's "ended" may follow from another task or instance.
                    with contextlib.suppress(TimeoutError):
                        while (timeout := left(ENDED_GRACE_SECONDS)) > 0:
                            late = await asyncio.wait_for(queue.get(), timeout)
                            if left(1) <= 0:
                                return
                            yield sse(late.type, late.to_dict())
                            if late.type == "ended":
                                break
                    return


def _text(body: dict[str, Any]) -> str:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ApiError(400, "invalid_body", "text must be a non-empty string")
    if len(text) > MAX_TEXT_CHARS:
        raise ApiError(413, "too_large", f"text exceeds {MAX_TEXT_CHARS} characters")
    return text


# Characters JSON leaves raw that line readers still split on (str.splitlines, and so
# httpx's aiter_lines): written as \u escapes, the same JSON to any parser.
_LINE_BREAKS_IN_JSON = {code: f"\\u{code:04x}" for code in (0x85, 0x2028, 0x2029)}


def sse(event: str, data: Any) -> str:
    """One Server-Sent Event; the JSON payload has no raw line break of any kind
    (a client reading lines gets whole events), and ``dumps`` cannot fail on what
    the session holds."""
    return f"event: {event}\ndata: {dumps(data).translate(_LINE_BREAKS_IN_JSON)}\n\n"


def summary(session: Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "status": session.status.value,
        "terminated": session.terminated,
        "dp_session_id": session.dp_session_id,
        "created_at": session.created_at,
        "connected_at": session.connected_at,
        "ended_at": session.ended_at,
        "expires_at": session.expires_at,
        "speech_state": session.speech_state,
        "turns": session.turns,
    }
