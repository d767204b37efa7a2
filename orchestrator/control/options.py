"""What a control socket allows, and the codes it is closed with.

Shared by the sans-I/O core (``conversation``), which decides most closes, and
the connection, which applies the rest (slow peers, shutdown, replacement).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.control import protocol
from orchestrator.handlers import Handler
from orchestrator.sessions.model import DEFAULT_TRANSCRIPT_MAX_BYTES, DEFAULT_TRANSCRIPT_TURNS

# Close codes (documented in the README).
CLOSE_NORMAL = 1000  # the session was ended through the API
CLOSE_GOING_AWAY = 1001  # the server is shutting down
CLOSE_POLICY = 1008  # flood past the rate limit; keyName does not match the token
CLOSE_TOO_BIG = 1009  # repeated oversize frames
CLOSE_REPLACED = 4001  # a newer connection for the same session took over
CLOSE_SLOW_PEER = 4008  # the peer stopped reading

MAX_OVERSIZE_FRAMES = 3
CLOSE_TIMEOUT_SECONDS = 2.0
MAX_QUEUED_TURNS = 16


@dataclass
class ControlOptions:
    """Limits and behaviour of control connections (from the settings)."""

    handler: Handler
    handler_timeout_seconds: float = 10.0
    apology: str = "Sorry, something went wrong on my side."
    max_frame_bytes: int = protocol.DEFAULT_MAX_FRAME_BYTES
    max_frames_per_second: float = 50.0
    burst_frames: float = 200.0
    send_timeout_seconds: float = 10.0
    transaction_timeout_seconds: float = 10.0
    transcript_turns: int = DEFAULT_TRANSCRIPT_TURNS
    transcript_max_bytes: int = DEFAULT_TRANSCRIPT_MAX_BYTES
