"""Caps on open event streams (``GET /sessions/{id}/events``), and the response
that holds a stream's place until it ends.

Each open stream holds a socket (a file descriptor) and its task, queue and
buffers for as long as the client keeps it. Uncapped, one UI token could open
streams until the process ran out of descriptors, and then ``/healthz`` and
control-socket handshakes went unanswered. So streams are counted per session
(UI tokens and the API key apart), per client address (UI tokens only; the
address as ``TRUSTED_PROXY_HOPS`` resolves it) and per process, the last kept
well below the open-file limit. Counts are per process: with several workers
or instances each has its own.
"""

from __future__ import annotations

import contextlib
import resource
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from orchestrator.server.heads import ENDS_AT_SHUTDOWN_EXTENSION
from tokens.web.http import ApiError

Reason = Literal["session", "address", "global"]
REASONS: tuple[Reason, ...] = ("session", "address", "global")
K = TypeVar("K")

# What a refused client is told to wait: a stream whose client vanished without
# closing its connection is found (and its place freed) at the next keepalive
# write, which comes within 15 s.
RETRY_AFTER_SECONDS = 15
# The process-wide cap when SSE_MAX_STREAMS is unset: this share of the
# open-file limit, so control sockets, /healthz and the stores keep the rest;
# and never more than MAX_DERIVED_STREAMS (each stream costs ~30 KiB).
SHARE_OF_FILE_LIMIT = 4
MAX_DERIVED_STREAMS = 10_000


def open_file_limit() -> int | None:
    """The process's soft ``RLIMIT_NOFILE``, or ``None`` if unlimited."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def derived_total(file_limit: int | None) -> int:
    """The process-wide cap for an open-file limit of ``file_limit``."""
    if file_limit is None:
        return MAX_DERIVED_STREAMS
    return max(1, min(file_limit // SHARE_OF_FILE_LIMIT, MAX_DERIVED_STREAMS))


@dataclass(frozen=True)
class StreamCaps:
    per_session: int  # streams of one session followed with UI tokens
    per_session_backend: int  # streams of one session followed with the API key
    per_address: int  # UI-token streams from one client address
    total: int  # every stream of this process


class StreamRefused(Exception):
    """A stream past one of the caps; ``reason`` names which."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason

    def as_api_error(self) -> ApiError:
        """429 for a client over its own share, 503 when the process is full;
        ``Connection: close`` so the refused connection's descriptor goes at once."""
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS), "Connection": "close"}
        if self.reason == "global":
            return ApiError(503, "server_busy", str(self), headers)
        return ApiError(429, "too_many_streams", str(self), headers)


class StreamSlot:
    """One open stream's place in the counts; ``release`` gives it back (once)."""

    __slots__ = ("_address", "_released", "_session", "_slots")

    def __init__(self, slots: StreamSlots, session: tuple[str, bool], address: str | None) -> None:
        self._slots = slots
        self._session = session
        self._address = address
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._slots._release(self._session, self._address)


class StreamSlots:
    """The open streams, counted per session, per address and in all."""

    def __init__(self, caps: StreamCaps) -> None:
        self.caps = caps
        self.open = 0
        # (session id, followed with the API key) -> open streams; no zero entries.
        self._sessions: dict[tuple[str, bool], int] = {}
        self._addresses: dict[str, int] = {}

    def acquire(self, session_id: str, address: str | None, *, backend: bool) -> StreamSlot:
        """A place for one more stream of ``session_id`` from ``address`` (``None``:
        not counted per address, as for the API key), or ``StreamRefused``."""
        caps = self.caps
        session = (session_id, backend)
        per_session = caps.per_session_backend if backend else caps.per_session
        if self._sessions.get(session, 0) >= per_session:
            who = "the API key" if backend else "UI tokens"
            raise StreamRefused(
                "session", f"this session already has {per_session} event streams for {who}"
            )
        if address is not None and self._addresses.get(address, 0) >= caps.per_address:
            raise StreamRefused(
                "address", f"this address already has {caps.per_address} event streams"
            )
        if self.open >= caps.total:
            raise StreamRefused("global", "the server has no room for another event stream")
        self._sessions[session] = self._sessions.get(session, 0) + 1
        if address is not None:
            self._addresses[address] = self._addresses.get(address, 0) + 1
        self.open += 1
        return StreamSlot(self, session, address)

    def _release(self, session: tuple[str, bool], address: str | None) -> None:
        self.open -= 1
        _decrement(self._sessions, session)
        if address is not None:
            _decrement(self._addresses, address)

    def tracked(self) -> int:
        """Entries held in the per-session and per-address counts (0 when none is open)."""
        return len(self._sessions) + len(self._addresses)


def _decrement(counts: dict[K, int], key: K) -> None:
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]


class EventStreamResponse(StreamingResponse):
    """A stream that gives back its ``slot`` and closes its generator however
    it ends: finished, the client gone, cancelled before its first event."""

    def __init__(
        self, content: AsyncGenerator[str, None], slot: StreamSlot, headers: Mapping[str, str]
    ) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.generator = content
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Ended by the server stack when it shuts down (orchestrator/server/heads.py),
        # rather than holding the graceful shutdown for its whole timeout.
        ending = scope.get("extensions", {}).get(ENDS_AT_SHUTDOWN_EXTENSION)
        if ending is not None:
            ending["end"] = True
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
            # Starlette leaves a generator cancelled at a send suspended until
            # collected: closing it now unsubscribes its queue at once.
            with contextlib.suppress(Exception):
                await self.generator.aclose()
