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

import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .sessions import Session


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


class HandlerLoadError(ImportError):
    """The ``module:callable`` setting does not name a usable handler."""


def load_handler(spec: str) -> Handler:
    """Import ``module:callable`` and check it is callable."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise HandlerLoadError(f"CONVERSATION_HANDLER={spec!r}: use 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerLoadError(f"cannot import {module_name!r}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise HandlerLoadError(f"{module_name!r} has no attribute {attribute!r}")
    if not callable(target):
        raise HandlerLoadError(f"CONVERSATION_HANDLER={spec!r} is not callable")
    _check_handler(f"CONVERSATION_HANDLER={spec!r}", target)
    handler: Handler = target
    return handler


def _check_handler(setting: str, target: Any) -> None:
    """Refuse at start-up what would fail every turn: the server awaits
    ``handler(request, conversation)``, so a plain ``def`` (whose result is not
    awaitable) or a signature that cannot take those two arguments would only
    show up as a ``TypeError`` and the apology on each turn."""
    fix = "declare it `async def handle(request, conversation)`"
    if isinstance(target, type):
        raise HandlerLoadError(
            f"{setting} is a class, not a handler: name an `async def` function or an "
            "instance whose __call__ is `async def`"
        )
    inner = target
    while isinstance(inner, functools.partial):
        inner = inner.func
    if not (
        inspect.iscoroutinefunction(inner)
        or (
            not inspect.isroutine(inner)
            and not isinstance(inner, type)
            and inspect.iscoroutinefunction(type(inner).__call__)
        )
    ):
        kind = "a plain (not async) function" if inspect.isroutine(inner) else "not async"
        raise HandlerLoadError(
            f"{setting} is {kind}: the server awaits the handler on every turn; {fix}"
        )
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # no signature to read (some C callables): trust it
        return
    try:
        signature.bind(None, None)
    except TypeError:
        raise HandlerLoadError(
            f"{setting} must accept two positional arguments (request, conversation); "
            f"its signature is {signature}"
        ) from None
