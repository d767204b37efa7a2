"""The pytest API: a conversation with a handler, in-process, turn by turn.

::

    async with conversation(handle, claims={"user": "Ada"}) as convo:
        assert "Hello" in convo.welcome.text
        turn = await convo.say("what is my name")
        assert turn.text == "Your name is Ada."

It runs through the server's own conversation core (``engine``), with the
settings' handler timeout, apology and limits; ``handler`` is a handler
(function or object) or a ``CONVERSATION_HANDLER`` value (``"llm"``,
``"webhook"``, ``"module:callable"``) built from ``settings``. A handler built
here is closed (``aclose``) at the end; one passed in stays the caller's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from orchestrator.config import Settings
from orchestrator.control.options import ControlOptions
from orchestrator.handlers.loader import load_handler
from orchestrator.sessions.model import Session
from orchestrator.testing.engine import InProcessConversation, close_options
from orchestrator.testing.results import TurnResult


class ConversationRun:
    """One live conversation: ``welcome`` (the init turn's result), ``say(text)``
    for each user turn, ``session`` for anything else (claims, transcript)."""

    def __init__(self, conversation: InProcessConversation) -> None:
        self._conversation = conversation
        self.welcome: TurnResult | None = None
        self.turns: list[TurnResult] = []

    @property
    def session(self) -> Session:
        return self._conversation.session

    @property
    def variables(self) -> dict[str, Any]:
        """The session's shared variables now."""
        return dict(self._conversation.session.variables)

    async def say(self, text: str) -> TurnResult:
        """The user says ``text``; returns once the handler's turn is over."""
        turn = await self._conversation.say(text)
        self.turns.append(turn)
        return turn


@asynccontextmanager
async def conversation(
    handler: Any,
    *,
    claims: Mapping[str, Any] | None = None,
    variables: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
    welcome: bool = True,
) -> AsyncIterator[ConversationRun]:
    """A conversation with ``handler``, as a session whose token carried ``claims``
    and which starts with ``variables``; the init turn is played first unless
    ``welcome=False``. On exit the host hangs up (``on_end`` runs)."""
    settings = settings if settings is not None else Settings()
    owned = isinstance(handler, str)
    target = load_handler(handler, settings) if owned else handler
    options = ControlOptions.from_settings(settings, target)
    session = InProcessConversation(options, claims=claims, variables=variables)
    run = ConversationRun(session)
    try:
        await session.start()
        try:
            if welcome:
                run.welcome = await session.welcome()
            yield run
        finally:
            await session.close()
    finally:
        if owned:
            await close_options(options)
