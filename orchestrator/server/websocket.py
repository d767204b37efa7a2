"""The WebSocket server stack below the app: uvicorn's websockets-sansio protocol, bounded.

Some traffic never reaches the app as a frame, so the app's own limits cannot
see it: uvicorn answers pings itself, writes pongs into the transport's buffer
whether or not the peer reads, buffers a message up to ``ws_max_size`` before
the app's size check, and leaves a handshake that the websockets parser
rejects unanswered. ``BoundedWebSocketProtocol`` closes those gaps with limits
taken from the settings (``uvicorn_websocket_options``):

- ping and pong frames share a token bucket of ``CONTROL_MAX_FRAMES_PER_SECOND``
  (bursts of 4x); a flood past it closes the socket with 1008;
- while the write buffer is over the transport's high-water mark (64 KiB) the
  socket is not read, so a peer cannot make the server queue pongs it does
  not take; still over it after ``CONTROL_SEND_TIMEOUT_SECONDS``, the
  connection is dropped (4008 to the app, an abort on the wire: a close frame
  would not get through);
- a handshake line up to ``HANDSHAKE_LINE_BYTES`` reaches the app, so a token
  just over the verifier's limit is refused like any other bad token (403);
  longer lines are refused below, by the HTTP stack's head bounds
  (``orchestrator/server/heads.py``), and a handshake the websockets parser
  still rejects is answered at once (400, 414 or 431 with a JSON error);
- an invalid UTF-8 text frame closes with 1007, as RFC 6455 says, with one
  warning line rather than uvicorn's traceback.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Generator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.datastructures import Headers
from websockets.exceptions import HeaderLineTooLong, RequestLineTooLong, TooManyHeaders
from websockets.frames import Frame
from websockets.http11 import Response
from websockets.streams import StreamReader

from orchestrator.config import Settings
from orchestrator.control.flood import TokenBucket
from orchestrator.control.options import BOUNDED_SENDS_EXTENSION
from orchestrator.logs import get_logger
from orchestrator.metrics import STACK_HANDSHAKES_REFUSED
from tokens.jws import MAX_TOKEN_BYTES

log = get_logger("orchestrator.websocket")

CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_SLOW_PEER = 4008
# Twice the token verifier's limit: a handshake carrying a token just over it
# still parses, and the app refuses the token itself (403, counted).
HANDSHAKE_LINE_BYTES = 2 * MAX_TOKEN_BYTES


@dataclass(frozen=True, slots=True)
class StackLimits:
    """What the protocol enforces per connection (from the settings)."""

    send_timeout_seconds: float = 10.0
    control_frames_per_second: float = 50.0
    control_frames_burst: float = 200.0

    @classmethod
    def from_settings(cls, settings: Settings) -> StackLimits:
        rate = settings.control_max_frames_per_second
        return cls(settings.control_send_timeout_seconds, rate, rate * 4)


def max_message_bytes(settings: Settings) -> int:
    """uvicorn's ``ws_max_size``: twice the app's frame limit.

    Frames up to it reach the app, which ignores and counts those over its own
    limit (closing on the third); larger ones close the socket (1009) before
    the server buffers them.
    """
    return 2 * settings.control_max_frame_bytes


def uvicorn_websocket_options(settings: Settings) -> dict[str, Any]:
    """The WebSocket arguments for ``uvicorn.run`` / ``uvicorn.Config``.

    ``ws`` is a ``functools.partial`` of the protocol class (uvicorn only calls
    it), so it pickles for ``--workers`` processes.
    """
    return {
        "ws": functools.partial(
            BoundedWebSocketProtocol, limits=StackLimits.from_settings(settings)
        ),
        "ws_max_size": max_message_bytes(settings),
        # No permessage-deflate: its zlib state (~45 KiB per socket, measured by
        # bench/idle_scale.py) buys little on small JSON control frames.
        "ws_per_message_deflate": False,
    }


class _HandshakeReader(StreamReader):
    """Reads handshake lines up to ``HANDSHAKE_LINE_BYTES`` (websockets allows 8 KiB)."""

    def read_line(
        self, m: int, too_long_exc_type: type[Exception] = RuntimeError
    ) -> Generator[None, None, bytearray]:
        return super().read_line(max(m, HANDSHAKE_LINE_BYTES), too_long_exc_type)


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol with the limits in the module docstring."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: StackLimits | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits if limits is not None else StackLimits()
        self.control_frames = TokenBucket(
            self.limits.control_frames_per_second, self.limits.control_frames_burst
        )
        self.writes_paused = False
        self.drain_timer: asyncio.TimerHandle | None = None
        # The handshake parser starts in the constructor with the default reader;
        # restart it on one that allows longer lines (no data has arrived yet).
        self.conn.reader = _HandshakeReader()
        self.conn.parser = self.conn.parse()
        next(self.conn.parser)

    def _mark(self, flag: str) -> None:
        """Set ``flag`` in the socket's ``BOUNDED_SENDS_EXTENSION`` for the app to read:
        ``dropped`` (the disconnect it is about to read is this server's doing) or
        ``lost`` (the connection is gone)."""
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"].get(BOUNDED_SENDS_EXTENSION, {})[flag] = True

    # --- handshake ---------------------------------------------------------------

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # made only for a handshake that goes on
        if scope is not None:
            # A send blocked past the timeout drops the peer (drop_slow_peer), so
            # the app need not arm a timer per send.
            scope["extensions"][BOUNDED_SENDS_EXTENSION] = {
                "timeout_seconds": self.limits.send_timeout_seconds
            }

    def handle_handshake_exception(self) -> None:
        # uvicorn 0.55 calls this when the parser rejects the handshake; its answer
        # is websockets' text/plain one, ours the JSON every other refusal has.
        rejected = self.conn.handshake_exc
        if rejected is None or self.close_sent:
            super().handle_handshake_exception()
            return
        self.refuse_handshake(rejected)

    def refuse_handshake(self, exc: Exception) -> None:
        """Answer a handshake the parser rejected (uvicorn would leave it hanging)."""
        if isinstance(exc, RequestLineTooLong):
            status, code = HTTPStatus.REQUEST_URI_TOO_LONG, "request_line_too_long"
        elif isinstance(exc, HeaderLineTooLong | TooManyHeaders):
            status, code = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large"
        else:
            status, code = HTTPStatus.BAD_REQUEST, "bad_request"
        detail = f"WebSocket handshake refused: {exc}"
        log.warning("websocket handshake refused", reason=code, client=self._client_host())
        STACK_HANDSHAKES_REFUSED.labels(code).inc()
        self.conn.data_to_send()  # websockets' own text/plain answer, replaced by ours
        body = json.dumps({"error": code, "detail": detail}).encode()
        headers = Headers(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ]
        )
        self.transport.write(Response(status, status.phrase, headers, body).serialize())
        self.close_sent = True
        self.handshake_complete = True
        self.transport.close()

    # --- ping floods -------------------------------------------------------------

    def handle_ping(self) -> None:
        if self.close_sent:
            self.conn.data_to_send()  # no pongs once we are closing
            return
        if self._control_frame_allowed():
            super().handle_ping()

    def handle_pong(self, event: Frame) -> None:
        if not self.close_sent and self._control_frame_allowed():
            super().handle_pong(event)

    def _control_frame_allowed(self) -> bool:
        if self.control_frames.take():
            return True
        log.warning("ping flood; closing", code=CLOSE_POLICY, client=self._client_host())
        reason = "control frame rate limit exceeded"
        self._mark("dropped")
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": CLOSE_POLICY, "reason": reason}
        )
        self.conn.fail(CLOSE_POLICY, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        # close() waits for the buffer to drain, which a flooder that does not
        # read never lets happen: abort if it is still there after the timeout.
        self.close_timer = self.loop.call_later(
            self.limits.send_timeout_seconds, self.transport.abort
        )
        self.transport.close()
        return False

    # --- a peer that does not read -----------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        self.writes_paused = True
        self.transport.pause_reading()
        if self.drain_timer is None:
            self.drain_timer = self.loop.call_later(
                self.limits.send_timeout_seconds, self.drop_slow_peer
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        self.writes_paused = False
        self._cancel_drain_timer()
        if not self.read_paused:
            self.transport.resume_reading()

    def drop_slow_peer(self) -> None:
        self.drain_timer = None
        log.warning(
            "peer not reading; dropping the connection",
            code=CLOSE_SLOW_PEER,
            buffered=self.transport.get_write_buffer_size(),
            client=self._client_host(),
        )
        if not self.close_sent:
            reason = "peer is not reading"
            self._mark("dropped")
            self.queue.put_nowait(
                {"type": "websocket.disconnect", "code": CLOSE_SLOW_PEER, "reason": reason}
            )
        self.close_sent = True
        self.transport.abort()

    async def receive(self) -> Any:
        message = await super().receive()
        self._hold_reads()
        return message

    async def send(self, message: Any) -> None:
        await super().send(message)
        self._hold_reads()
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # uvicorn keeps the handshake's request and response (headers and
            # all, ~20 objects) for the socket's life; nothing reads them once
            # the 101 is written, and the collector would walk them every pass.
            self.request = self.response = None  # type: ignore[assignment]

    def _hold_reads(self) -> None:
        # uvicorn resumes reading when the app drains its queue or closes; keep
        # reads paused while the peer is not taking what we write.
        if self.writes_paused:
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_drain_timer()
        self._mark("lost")
        super().connection_lost(exc)

    def _cancel_drain_timer(self) -> None:
        if self.drain_timer is not None:
            self.drain_timer.cancel()
            self.drain_timer = None

    # --- messages ----------------------------------------------------------------

    def send_receive_event_to_app(self) -> None:
        # uvicorn's own, except that invalid UTF-8 logs one line, not a traceback.
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        if self.curr_msg_data_type == "text":
            try:
                self.queue.put_nowait({"type": "websocket.receive", "text": data.decode()})
            except UnicodeDecodeError:
                log.warning(
                    "invalid UTF-8 in a text frame; closing",
                    code=CLOSE_INVALID_DATA,
                    client=self._client_host(),
                )
                self.conn.send_close(CLOSE_INVALID_DATA, "invalid UTF-8")
                self.handle_parser_exception()
                return
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def handle_parser_exception(self) -> None:
        exc = self.conn.parser_exc
        if exc is not None and self.conn.close_sent is not None:
            # A frame the websockets parser refused: over ws_max_size (1009) or
            # not valid WebSocket (1002). uvicorn closes without a word.
            log.warning(
                "websocket frame refused; closing",
                code=self.conn.close_sent.code,
                detail=str(exc),
                client=self._client_host(),
            )
        super().handle_parser_exception()

    def _client_host(self) -> str | None:
        return self.client[0] if self.client else None
