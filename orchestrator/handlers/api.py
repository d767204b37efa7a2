"""The conversation handler API: how users plug their logic in.

A handler is chosen by the ``CONVERSATION_HANDLER`` setting (a built-in name,
``default``, ``webhook`` or ``llm``, or ``module:callable``) and checked at
start-up (``orchestrator.handlers.loader``). The simplest is an async
function::

    from orchestrator.handlers import Conversation, ConversationRequest, Reply

    async def handle(request: ConversationRequest, conversation: Conversation) -> Reply | None:
        if request.is_init:
            return Reply("Welcome!")
        return Reply(f"You said {request.text}", variables={"last": request.text})

It receives the request (text, DP variables, init flag, the session with its
custom claims and shared variables) and returns a ``Reply`` (sent as one
``conversationResponse``) or ``None``. Through ``conversation`` it can also
speak unprompted, stop speaking, send several responses in one turn and set
variables. A handler that raises or times out makes the DP say the configured
apology; the socket stays open.

A handler may also be an object (see ``HandlerObject``): its async ``handle``
(or ``__call__``) answers turns, and optional async hooks hear about the
conversation's life: ``on_start(session)`` when the control socket connects,
``on_idle(session, seconds)`` after ``IDLE_PROMPT_SECONDS`` of silence (once
per silence; what it returns is said), ``on_end(session, reason)`` when the
conversation ends for good (``reason`` is one of the ``END_*`` constants) and
``aclose()`` at server shutdown. ``interruptible = True`` lets a new user turn
(or the DP reporting that the user started speaking) cancel the turn in
flight. Each hook is bounded by the handler timeout; one that fails is logged
and counted, never ends the socket.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from orchestrator.sessions.model import Session
from orchestrator.sessions.transcript import MAX_STAGE_CHARS, MAX_TIMING_STAGES
from tokens.claims import client_chosen, custom_claims

# Why a conversation ended (``on_end``'s ``reason``).
END_DISCONNECTED = "disconnected"  # the peer closed or the network broke
END_TERMINATED = "terminated"  # ended through the sessions API
END_SHUTDOWN = "shutdown"  # this server is shutting down
END_CLOSED_BY_SERVER = "closed_by_server"  # flood, oversize frames, slow peer, keyName
END_REASONS = (END_DISCONNECTED, END_TERMINATED, END_SHUTDOWN, END_CLOSED_BY_SERVER)


@dataclass(frozen=True, slots=True)
class Card:
    """A content card: shown when the reply's text contains ``@showcards(id)``.

    Sent as the variable ``public-<id>`` = ``{"component": ..., "data": ...}``.
    """

    id: str
    component: str
    data: Mapping[str, Any]

    @property
    def marker(self) -> str:
        return f"@showcards({self.id})"

    @property
    def variable(self) -> tuple[str, dict[str, Any]]:
        return f"public-{self.id}", {"component": self.component, "data": dict(self.data)}


@dataclass(frozen=True, slots=True)
class Reply:
    """What the DP answers: text, variables, a fallback flag and content cards.

    Cards whose marker is not in ``text`` get it appended, so they show.
    ``fallback=True`` lets a Studio fallback skill answer instead.
    """

    text: str = ""
    variables: Mapping[str, Any] = field(default_factory=dict)
    fallback: bool = False
    cards: tuple[Card, ...] = ()

    def output_text(self) -> str:
        text = self.text
        for card in self.cards:
            if card.marker not in text:
                text = f"{text} {card.marker}".strip()
        return text

    def all_variables(self) -> dict[str, Any]:
        merged = dict(self.variables)
        for card in self.cards:
            name, value = card.variable
            merged[name] = value
        return merged


class TurnTimings:
    """When each stage of one turn happened, from the frame's arrival (monotonic clock).

    The connection marks ``"handler_done"`` and ``"first_frame"`` (the first
    ``conversationResponse`` or ``startSpeaking`` of the turn written to the
    socket); a handler may mark its own (the LLM handler: ``"first_token"``,
    ``"first_sentence"``). Only the first mark of a stage counts.
    """

    __slots__ = ("_as_ms", "_clock", "_marks", "received")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.received = clock()
        self._marks: dict[str, float] = {}
        self._as_ms: dict[str, float] | None = None  # as_ms() until the next mark

    def mark(self, stage: str) -> None:
        """Record that ``stage`` happened now (ignored when already recorded)."""
        marks = self._marks
        stage = stage[:MAX_STAGE_CHARS]
        if stage not in marks and len(marks) < MAX_TIMING_STAGES:
            marks[stage] = self._clock()
            self._as_ms = None

    def as_ms(self) -> dict[str, float]:
        """Milliseconds from the frame's arrival to each stage, to 0.1 ms (a copy:
        the turn's reply and its metrics both read it)."""
        if self._as_ms is None:
            received = self.received
            self._as_ms = {
                stage: round((at - received) * 1000, 1) for stage, at in self._marks.items()
            }
        return dict(self._as_ms)


@dataclass(frozen=True, slots=True)
class ConversationRequest:
    """One ``conversationRequest`` from the DP, with the session it belongs to."""

    text: str
    variables: Mapping[str, Any]
    is_init: bool
    optional_args: Mapping[str, Any]
    session: Session
    timings: TurnTimings = field(default_factory=TurnTimings)

    @property
    def claims(self) -> Mapping[str, Any]:
        """The token's custom claims (set by the UI's or the backend's token
        request); ``client_claims`` names those a client chose."""
        return custom_claims(self.session.claims)

    @property
    def client_claims(self) -> frozenset[str]:
        """The names of the custom claims a client chose without the API key:
        data from the user's browser, not the backend's word."""
        return client_chosen(self.session.claims)


class Conversation(Protocol):
    """The live conversation a handler may act on beyond its return value."""

    @property
    def session(self) -> Session: ...

    async def respond(self, reply: Reply, *, input_text: str = "") -> None:
        """Send a ``conversationResponse`` now (several per turn are allowed)."""

    async def speak(
        self, text: str, *, can_be_interrupted: bool = True, filter_commands: bool | None = None
    ) -> None:
        """Make the DP speak unprompted (``startSpeaking``)."""

    async def stop_speaking(self) -> None:
        """Interrupt the DP (``stopSpeaking``)."""

    async def set_variables(self, variables: Mapping[str, Any], *, by_model: bool = False) -> None:
        """Merge into the session's variables (sent with the next response).

        ``None`` removes a name. A change past the bound (``VariablesRefused``,
        a ``ValueError``) changes nothing; it is logged and counted. ``by_model``:
        a model chose it (a tool), so only ``llm-`` names, within the model's budget.
        """

    async def speech_idle(self) -> None:
        """Return once the persona is not speaking (at once when it is not)."""


Handler = Callable[[ConversationRequest, Conversation], Awaitable[Reply | None]]
"""A turn handler: an async function (or object with an async ``__call__``)."""


class HandlerObject(Protocol):
    """A handler with lifecycle hooks; every member but ``handle`` is optional.

    The server looks each hook up by name; this protocol documents them (a
    handler need not inherit from it).
    """

    interruptible: ClassVar[bool]

    async def handle(
        self, request: ConversationRequest, conversation: Conversation
    ) -> Reply | None:
        """Answer one turn (as a function handler does)."""

    async def on_start(self, session: Session) -> None:
        """The session's control socket connected (usually before the init turn)."""

    async def on_idle(self, session: Session, seconds: float) -> Reply | str | None:
        """``seconds`` of silence: what the DP should say (recorded in the transcript)."""

    async def on_end(self, session: Session, reason: str) -> None:
        """The conversation on this connection ended for good (``END_*``); not
        called when a newer connection took the session over."""

    async def aclose(self) -> None:
        """The server is shutting down (close pooled clients)."""
