"""What the conversation core asks of its connection, in order.

``ConversationCore`` returns a sequence of these for each frame or call; the
connection carries them out. The closes the core decides are built once here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.control.options import CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG
from orchestrator.control.protocol import ConversationRequestBody
from orchestrator.handlers.api import TurnTimings
from orchestrator.sessions.transcript import Turn


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
    timings: TurnTimings = field(default_factory=TurnTimings)


@dataclass(slots=True)
class StartIdle:
    """Call the handler's ``on_idle``: ``seconds`` of silence (counted as a turn)."""

    seconds: float


@dataclass(slots=True)
class SentReply:
    """A reply of a timed turn went out (after its ``Send``): mark the turn's first
    frame, record its latency on ``turn`` and publish the ``turn`` event."""

    turn: Turn
    timings: TurnTimings
    extra: dict[str, bool]


class Interrupt:
    """Cancel the turn in flight and drop queued ones (``INTERRUPT``, an
    interruptible handler's user spoke)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class IdleTimer:
    """Fire ``StartIdle`` at ``deadline`` (the core's clock); ``None``: not now."""

    deadline: float | None


class SpeechChanged:
    """The persona's speech state changed (``SPEECH_CHANGED``; wakes ``speech_idle``)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket with this code and reason."""

    code: int
    reason: str


Action = (
    Send
    | Publish
    | Save
    | StartTurn
    | Close
    | StartIdle
    | SentReply
    | Interrupt
    | IdleTimer
    | SpeechChanged
)
Actions = Sequence[Action]

SAVE = Save()
INTERRUPT = Interrupt()
SPEECH_CHANGED = SpeechChanged()
NOTHING: Actions = ()
FLOODED = Close(CLOSE_POLICY, "message rate limit exceeded")
WRONG_KEY_NAME = Close(CLOSE_POLICY, "keyName does not match the token issuer")
OVERSIZED = Close(CLOSE_TOO_BIG, "repeated oversize frames")
ENDED = Close(CLOSE_NORMAL, "session ended")


def turn_event(turn: Turn, **extra: bool) -> dict[str, Any]:
    """A ``turn`` event: the entry as the transcript keeps it (so followers'
    queues hold no more than the transcript does)."""
    return {"role": turn.role, "text": turn.text, **extra, **turn.notes()}
