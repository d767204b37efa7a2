"""The conversation handler API: how users plug their logic in.

A handler is an async callable chosen by the ``CONVERSATION_HANDLER`` setting
(``module:callable``), checked at start-up (``load_handler``)::

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
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.sessions.model import Session


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


@dataclass(frozen=True, slots=True)
class ConversationRequest:
    """One ``conversationRequest`` from the DP, with the session it belongs to."""

    text: str
    variables: Mapping[str, Any]
    is_init: bool
    optional_args: Mapping[str, Any]
    session: Session

    @property
    def claims(self) -> Mapping[str, Any]:
        """The token's custom claims (set by the UI's token request)."""
        return self.session.claims


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

    async def set_variables(self, variables: Mapping[str, Any]) -> None:
        """Merge into the session's variables (sent with the next response)."""


Handler = Callable[[ConversationRequest, Conversation], Awaitable[Reply | None]]
