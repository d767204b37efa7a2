"""What a control socket allows, and the codes it is closed with.

Shared by the sans-I/O core (``conversation``), which decides most closes, and
the connection, which applies the rest (slow peers, shutdown, replacement).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrator.control import protocol
from orchestrator.handlers.api import (
    END_CLOSED_BY_SERVER,
    END_DISCONNECTED,
    END_SHUTDOWN,
    END_TERMINATED,
)
from orchestrator.handlers.hooks import LoadedHandler
from orchestrator.sessions.model import DEFAULT_TRANSCRIPT_MAX_BYTES, DEFAULT_TRANSCRIPT_TURNS

if TYPE_CHECKING:
    from orchestrator.config import Settings

# Close codes (documented in the README).
CLOSE_NORMAL = 1000  # the session was ended through the API
CLOSE_GOING_AWAY = 1001  # the server is shutting down
CLOSE_POLICY = 1008  # flood past the rate limit; keyName does not match the token
CLOSE_TOO_BIG = 1009  # repeated oversize frames
CLOSE_REPLACED = 4001  # a newer connection for the same session took over
CLOSE_SLOW_PEER = 4008  # the peer stopped reading
CLOSE_SERVICE_RESTART = 1012  # how uvicorn closes live sockets when it shuts down

# ASGI scope extension of a server that drops a peer whose sends stay blocked
# for ``{"timeout_seconds": N}`` (``orchestrator.server.websocket``): under it a
# send needs no timer of its own. When that server drops a peer itself (one not
# reading, a ping flood) it sets ``"dropped": True`` there before the disconnect,
# and when the connection is gone (for any reason) ``"lost": True``, so a
# handshake that waited for its turn can skip its work for a host that left.
BOUNDED_SENDS_EXTENSION = "orchestrator.bounded_sends"

MAX_OVERSIZE_FRAMES = 3
CLOSE_TIMEOUT_SECONDS = 2.0
MAX_QUEUED_TURNS = 16


@dataclass
class ControlOptions:
    """Limits and behaviour of control connections (from the settings)."""

    handler: Any  # a handler function or object (see ``orchestrator.handlers.api``)
    handler_timeout_seconds: float = 10.0
    apology: str = "Sorry, something went wrong on my side."
    max_frame_bytes: int = protocol.DEFAULT_MAX_FRAME_BYTES
    max_frames_per_second: float = 50.0
    burst_frames: float = 200.0
    send_timeout_seconds: float = 10.0
    transaction_timeout_seconds: float = 10.0
    transcript_turns: int = DEFAULT_TRANSCRIPT_TURNS
    transcript_max_bytes: int = DEFAULT_TRANSCRIPT_MAX_BYTES
    idle_prompt_seconds: float = 0.0
    loaded: LoadedHandler = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.loaded = LoadedHandler.of(self.handler)

    @classmethod
    def from_settings(cls, settings: Settings, handler: Any) -> ControlOptions:
        """The options the server runs ``handler`` with (also ``orchestrator test``'s)."""
        return cls(
            handler=handler,
            handler_timeout_seconds=settings.handler_timeout_seconds,
            apology=settings.handler_apology,
            idle_prompt_seconds=settings.idle_prompt_seconds,
            max_frame_bytes=settings.control_max_frame_bytes,
            max_frames_per_second=settings.control_max_frames_per_second,
            burst_frames=settings.control_max_frames_per_second * 4,
            send_timeout_seconds=settings.control_send_timeout_seconds,
            transaction_timeout_seconds=settings.transaction_timeout_seconds,
            transcript_turns=settings.transcript_turns,
            transcript_max_bytes=settings.transcript_max_bytes,
        )


def end_reason(close_code: int | None, *, by_server: bool) -> str:
    """Why a conversation ended, from how its socket closed (``on_end``'s reason).

    ``by_server``: this server sent the close; otherwise the peer did (or the
    network broke), except uvicorn's own close at shutdown.
    """
    if not by_server:
        return END_SHUTDOWN if close_code == CLOSE_SERVICE_RESTART else END_DISCONNECTED
    if close_code == CLOSE_NORMAL:
        return END_TERMINATED
    if close_code == CLOSE_GOING_AWAY:
        return END_SHUTDOWN
    return END_CLOSED_BY_SERVER
