"""The HTTP server stack below the app: uvicorn's httptools protocol, with request heads bounded.

httptools (llhttp) sets no limit on a request head: uvicorn gathers the URL
and every header into Python objects, however long, before the app sees
anything (20 requests with 8 MiB headers kept 267 MiB after they closed; four
of 128 MiB stalled every other client for seconds). ``BoundedHttpToolsProtocol``
counts each head's bytes as they arrive and, past a bound, answers at once in
JSON, as the WebSocket stack does for its handshake lines:

- a request line (the URL) over ``HEAD_LINE_BYTES``: 414 ``request_line_too_long``;
- a header line over ``HEAD_LINE_BYTES``, more than ``MAX_HEADERS`` headers, or
  a head over ``HEAD_BYTES`` in all: 431 ``headers_too_large``.

The answer carries ``Connection: close``; the connection is then no longer
read (the rest of an oversize head stays in the kernel's buffers, not ours)
and is closed ``LINGER_SECONDS`` later, time for the client to read the answer
(closing at once, with its unread bytes pending, would reset the connection
and lose it). Every refusal is logged and counted in
``orchestrator_http_requests_refused_total{reason}``. The bounds apply to
WebSocket handshakes too, which reach the WebSocket stack only as a parsed head.

A head must also arrive in time: ``HTTP_HEAD_TIMEOUT_SECONDS`` from the
connection's opening, or from the first byte of a later head (uvicorn's
keep-alive timeout covers the silence between requests, but any byte resets
it, and nothing times a new connection that sends nothing). Past it the
answer is 408 ``head_timeout``, the same way, so idle or trickling sockets
cannot pile up to the file-descriptor limit.

At shutdown uvicorn waits (up to ``--graceful-timeout``) for every response to
finish, and an event stream never does: a response that marks itself in the
``ENDS_AT_SHUTDOWN_EXTENSION`` of its scope is ended instead, as if its client
had left, and its connection closed, so the archive is written at once.

uvicorn's h11 implementation bounds a head through a public setting
(``h11_max_incomplete_event_size``), but answers a plain-text 400 and took 1.7x
the server CPU per request of httptools on the token endpoint's benchmark (this
subclass adds about 5%), so the server keeps httptools with this subclass
(uvicorn ``<0.56``; see docs/dependencies.md).
"""

from __future__ import annotations

import asyncio
import functools
import json
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from orchestrator.config import Settings
from orchestrator.logs import get_logger
from orchestrator.metrics import HTTP_REQUESTS_REFUSED
from orchestrator.server.websocket import HANDSHAKE_LINE_BYTES

log = get_logger("orchestrator.http")

# One line of a head: the request line or a header (the WebSocket handshake's bound).
HEAD_LINE_BYTES = HANDSHAKE_LINE_BYTES
HEAD_BYTES = 4 * HEAD_LINE_BYTES  # 64 KiB: the request line and every header
MAX_HEADERS = 128  # as websockets allows in a handshake
LINGER_SECONDS = 1.0
# scope["extensions"][ENDS_AT_SHUTDOWN_EXTENSION]["end"] = True: an endless response
# (an event stream) that the server ends when it starts shutting down.
ENDS_AT_SHUTDOWN_EXTENSION = "orchestrator.ends_at_shutdown"
STATUS_BY_CODE = {
    "request_line_too_long": HTTPStatus.REQUEST_URI_TOO_LONG,
    "headers_too_large": HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
    "head_timeout": HTTPStatus.REQUEST_TIMEOUT,
}


def uvicorn_http_options(settings: Settings) -> dict[str, Any]:
    """The plain-HTTP arguments for ``uvicorn.run`` / ``uvicorn.Config`` (a partial
    of the protocol class, so it pickles for ``--workers`` processes)."""
    return {
        "http": functools.partial(
            BoundedHttpToolsProtocol, head_timeout_seconds=settings.http_head_timeout_seconds
        )
    }


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head bounds in the module docstring."""

    def __init__(self, *args: Any, head_timeout_seconds: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_head = True  # between requests and up to the end of a head
        self.head_bytes = 0
        self.refused = False
        self.head_timeout_seconds = head_timeout_seconds
        self.head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        if self.refused:
            return
        super().on_message_begin()
        self.scope["extensions"] = {ENDS_AT_SHUTDOWN_EXTENSION: {}}

    def shutdown(self) -> None:
        cycle = self.cycle
        if (
            cycle is not None
            and not cycle.response_complete
            and cycle.scope.get("extensions", {}).get(ENDS_AT_SHUTDOWN_EXTENSION, {}).get("end")
        ):
            # The app reads a disconnect (Starlette's streaming response stops); nothing
            # more is sent; the client reconnects elsewhere.
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.close()
            return
        super().shutdown()

    def _arm_head_timer(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.head_timeout_seconds, self._head_late)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_late(self) -> None:
        self.head_timer = None
        if self.refused or not self.in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind a response still going out: its time starts later.
            self._arm_head_timer()
            return
        self.refuse_head("head_timeout", f"no whole request head in {self.head_timeout_seconds} s")

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.in_head and self.head_bytes == 0:
            self._arm_head_timer()  # the first byte of a head (the first one is armed already)
        if not self.in_head:
            super().data_received(data)
            return
        room = HEAD_BYTES - self.head_bytes
        if len(data) <= room:
            self.head_bytes += len(data)
            super().data_received(data)
            return
        # Feed only what the bound allows; a head still open after it is refused.
        # (A head that starts in the read that ended the previous request counts
        # from the next read on: it may pass the bound by at most one read.)
        self.head_bytes = HEAD_BYTES
        super().data_received(data[:room])
        if self.refused or self.transport.get_protocol() is not self:
            return  # refused already, or upgraded to a WebSocket
        if self.in_head:
            # The request line is within its bound (on_url sees it as it comes).
            self.refuse_head("headers_too_large", f"the request head is over {HEAD_BYTES} bytes")
            return
        self.data_received(data[room:])

    # --- parser callbacks ----------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        if self.refused:
            return
        super().on_url(url)
        if len(self.url) > HEAD_LINE_BYTES:
            self.refuse_head(
                "request_line_too_long", f"the request line is over {HEAD_LINE_BYTES} bytes"
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.refused:
            return
        if len(name) + len(value) + 2 > HEAD_LINE_BYTES:
            self.refuse_head("headers_too_large", f"a header line is over {HEAD_LINE_BYTES} bytes")
        elif len(self.headers) >= MAX_HEADERS:
            self.refuse_head("headers_too_large", f"more than {MAX_HEADERS} headers")
        else:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.refused:
            return
        self.in_head = False
        self.head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self.refused:
            return
        self.in_head = True
        super().on_message_complete()

    def _should_upgrade(self) -> bool:
        # llhttp still reports the upgrade of a head refused part-way; it is not one.
        return not self.refused and super()._should_upgrade()

    def _unsupported_upgrade_warning(self) -> None:
        if not self.refused:
            super()._unsupported_upgrade_warning()

    # --- the answer ----------------------------------------------------------------

    def refuse_head(self, code: str, detail: str) -> None:
        """Answer 414/431/408 in JSON, stop reading, close after ``LINGER_SECONDS``."""
        self.refused = True
        self._cancel_head_timer()
        status = STATUS_BY_CODE[code]
        client = self.client[0] if self.client else None
        log.warning("request head refused", reason=code, detail=detail, client=client)
        HTTP_REQUESTS_REFUSED.labels(code).inc()
        body = json.dumps({"error": code, "detail": detail}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, status.phrase.encode(), len(body), body)
        )
        # What uvicorn keeps of this head goes now, not when the connection closes.
        self.url = b""
        self.headers = []
        self.scope = None  # type: ignore[assignment]
        self.transport.pause_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        loop = asyncio.get_running_loop()
        loop.call_later(LINGER_SECONDS, self.transport.abort)
