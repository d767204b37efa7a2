"""What the conversation core asks of its connection, in order.

``ConversationCore`` returns a sequence of these for each frame or call; the
connection carries them out. The closes the core decides are built once here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.control.options import CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG
from orchestrator.control.protocol import ConversationRequestBody
from orchestrator.sessions.model import Turn


@dataclass(slots=True)
class Send:
    """Send this text frame (a request whose transaction is already issued)."""

    text: str


@dataclass(slots=True)
class Publish:
    """Publish a session event to its followers."""

    event_type: str
    data: dict[str, Any]


class Save:
    """Save the session record (``SAVE`` is the only instance)."""

    __slots__ = ()


@dataclass(slots=True)
class StartTurn:
    """Run the handler for this request (its user turn is already recorded)."""

    body: ConversationRequestBody
    user_turn: Turn | None


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket with this code and reason."""

    code: int
    reason: str


Action = Send | Publish | Save | StartTurn | Close
Actions = Sequence[Action]

SAVE = Save()
NOTHING: Actions = ()
FLOODED = Close(CLOSE_POLICY, "message rate limit exceeded")
WRONG_KEY_NAME = Close(CLOSE_POLICY, "keyName does not match the token issuer")
OVERSIZED = Close(CLOSE_TOO_BIG, "repeated oversize frames")
ENDED = Close(CLOSE_NORMAL, "session ended")


def turn_event(turn: Turn, **extra: bool) -> dict[str, Any]:
    """A ``turn`` event: the entry as the transcript keeps it (so followers'
    queues hold no more than the transcript does)."""
    data: dict[str, Any] = {"role": turn.role, "text": turn.text, **extra}
    if turn.original_length is not None:
        data["truncated"] = True
        data["original_length"] = turn.original_length
    return data
