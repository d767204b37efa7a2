"""``/archive/sessions``: list, read, export and erase archived sessions.

The backend API key reads and erases any archived session; a session's own
UI token (while valid) reads that session's record and transcript, nothing
else. Credentials are checked by the sessions API's one ``caller``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from orchestrator.archive.record import (
    END_REASONS,
    ArchivedSession,
    transcript_jsonl,
    transcript_text,
)
from orchestrator.archive.store import (
    MAX_PAGE,
    ArchiveQuery,
    ArchiveStore,
    ArchiveUnavailable,
    decode_cursor,
    encode_cursor,
)
from tokens.web.errors import ErrorTable
from tokens.web.http import NO_STORE, ApiError, SafeJSONResponse

ARCHIVE_ERRORS: ErrorTable = {
    ArchiveUnavailable: lambda error: ApiError(
        503, "archive_unavailable", f"archive database unreachable: {error.kind}"
    ),
}
TRANSCRIPT_FORMATS = ("json", "txt", "jsonl")


class Caller(Protocol):
    @property
    def backend(self) -> bool: ...

    def may_touch(self, session_id: str) -> bool: ...


class ArchiveApi:
    def __init__(self, store: ArchiveStore, caller: Callable[[Request], Caller]) -> None:
        self.store = store
        self.caller = caller

    def routes(self) -> list[Route]:
        return [
            Route("/archive/sessions", self.list_sessions, methods=["GET"]),
            Route("/archive/sessions/{session_id}", self.get_session, methods=["GET"]),
            Route("/archive/sessions/{session_id}", self.delete_session, methods=["DELETE"]),
            Route("/archive/sessions/{session_id}/transcript", self.transcript, methods=["GET"]),
        ]

    def _backend(self, request: Request, what: str) -> None:
        if not self.caller(request).backend:
            raise ApiError(403, "forbidden", f"{what} needs the backend API key")

    async def _record(self, request: Request) -> ArchivedSession:
        session_id = request.path_params["session_id"]
        if not self.caller(request).may_touch(session_id):
            raise ApiError(403, "forbidden", "this token is for another session")
        record = await self.store.get(session_id)
        if record is None:
            raise ApiError(404, "not_found", "no such archived session")
        return record

    async def list_sessions(self, request: Request) -> Response:
        self._backend(request, "listing the archive")
        query = parse_query(request.query_params)
        page, cursor = await self.store.page(query)
        return SafeJSONResponse(
            {"sessions": page, "next_cursor": encode_cursor(cursor) if cursor else None},
            headers=NO_STORE,
        )

    async def get_session(self, request: Request) -> Response:
        return SafeJSONResponse((await self._record(request)).to_dict(), headers=NO_STORE)

    async def transcript(self, request: Request) -> Response:
        form = request.query_params.get("format", "json")
        if form not in TRANSCRIPT_FORMATS:
            raise ApiError(400, "invalid_query", "format must be json, txt or jsonl")
        record = await self._record(request)
        if form == "txt":
            return PlainTextResponse(transcript_text(record), headers=NO_STORE)
        if form == "jsonl":
            return Response(
                transcript_jsonl(record), media_type="application/x-ndjson", headers=NO_STORE
            )
        return SafeJSONResponse(
            {"id": record.id, "transcript": list(record.transcript)}, headers=NO_STORE
        )

    async def delete_session(self, request: Request) -> Response:
        self._backend(request, "erasing from the archive")
        session_id = request.path_params["session_id"]
        if not await self.store.delete(session_id):
            raise ApiError(404, "not_found", "no such archived session")
        return SafeJSONResponse({"id": session_id, "deleted": True}, headers=NO_STORE)


def parse_time(name: str, text: str) -> float:
    """Unix seconds or ISO 8601 (``2025-01-31``, ``2025-01-31T12:00:00Z``; UTC if no zone)."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{name} must be Unix seconds or an ISO 8601 time") from None
        seconds = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(seconds):
        raise ValueError(f"{name} must be Unix seconds or an ISO 8601 time")
    return seconds


def parse_query(params: Any) -> ArchiveQuery:
    """The list's query string as an ``ArchiveQuery``; 400 for what does not parse."""
    try:
        claim = None
        if "claim" in params:
            name, sep, value = params["claim"].partition(":")
            if not sep or not name:
                raise ValueError("claim must be name:value")
            claim = (name, value)
        reason = params.get("end_reason")
        if reason is not None and reason not in END_REASONS:
            raise ValueError(f"end_reason must be one of {', '.join(END_REASONS)}")
        limit_text = params.get("limit", "20")
        if not limit_text.isdigit() or not 1 <= (limit := int(limit_text)) <= MAX_PAGE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE}")
        return ArchiveQuery(
            since=parse_time("since", params["since"]) if "since" in params else None,
            until=parse_time("until", params["until"]) if "until" in params else None,
            issuer=params.get("issuer"),
            claim=claim,
            end_reason=reason,
            limit=limit,
            cursor=decode_cursor(params["cursor"]) if "cursor" in params else None,
        )
    except ValueError as exc:
        raise ApiError(400, "invalid_query", str(exc)) from None
