"""A conversation run in-process through the server's own conversation core.

``InProcessConversation`` opens a ``ControlConnection`` (the same
``ConversationCore`` and ``TurnRunner`` the server runs) on an in-memory
socket (``host.MemoryHost``) and plays the video host: the opening state, the
init turn, then each user turn, waiting for the handler to finish before the
next. Lifecycle hooks, tools, variables, interruption rules and the handler
timeout are the server's. ``play`` is the whole run for a script of user turns
(``orchestrator test`` and replay use it).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.backend.memory import MemoryStore
from orchestrator.control.connection import ControlConnection, ControlServices
from orchestrator.control.live import LiveConnections
from orchestrator.control.options import ControlOptions
from orchestrator.handlers.hooks import close_handler
from orchestrator.logs import get_logger
from orchestrator.sessions.events import EventHub
from orchestrator.sessions.model import Session
from orchestrator.testing.host import MemoryHost
from orchestrator.testing.results import TurnResult, turn_result

log = get_logger("orchestrator.testing")

TEST_ISSUER = "orchestrator-test"
SESSION_SECONDS = 3600
# Past the handler timeout (the server's own bound on a turn) the runner gives up
# too: a hook or a speech wait that never ends must not hang a suite.
EXTRA_WAIT_SECONDS = 5.0


class ConversationStuck(TimeoutError):
    """A turn did not end (its handler, hooks and sends) within the runner's bound."""


class ConversationClosed(RuntimeError):
    """The server closed the in-memory socket (the handler ended the session, say)."""


class InProcessConversation:
    """One session on an in-memory socket: ``await start()``, ``welcome()``,
    ``say(text)`` as often as needed, then ``await close()``."""

    def __init__(
        self,
        options: ControlOptions,
        *,
        claims: Mapping[str, Any] | None = None,
        variables: Mapping[str, Any] | None = None,
        session_id: str | None = None,
    ) -> None:
        self.options = options
        self.host = MemoryHost()
        session = Session(
            id=session_id or f"test-{secrets.token_hex(6)}",
            issuer=TEST_ISSUER,
            expires_at=int(time.time()) + SESSION_SECONDS,
            claims=dict(claims or {}),
        )
        session.variables = dict(variables or {})
        live = LiveConnections[ControlConnection]()
        self.services = ControlServices(
            store=MemoryStore(grace_seconds=SESSION_SECONDS),
            events=EventHub(),
            options=options,
            live=live,
        )
        self.connection = ControlConnection(
            self.host.websocket, session, self.services, verified=True
        )
        self.wait_seconds = options.handler_timeout_seconds * 2 + EXTRA_WAIT_SECONDS
        self._run: asyncio.Task[None] | None = None
        self._seen = 0  # frames of host.sent already given to a turn

    @property
    def session(self) -> Session:
        return self.connection.session

    async def start(self) -> None:
        """Connect as ``ControlEndpoint.handle`` does: recorded, announced,
        ``on_start``, then the receive loop; then the host's opening state."""
        connection = self.connection
        await self.services.store.create(connection.session)
        await self.host.websocket.accept()
        connected = connection.core.connected("test")
        await self.services.live.attach(connection)
        await connection.perform(connected)
        connection.turns.start()
        self._run = asyncio.create_task(connection.run())
        self.host.push(self.host.opening_state(f"dp-{connection.session.id}"))
        await self._settle()

    async def welcome(self) -> TurnResult:
        """The init turn (the DP's first ``conversationRequest``)."""
        return await self._turn(self.host.request("", init=True))

    async def say(self, text: str) -> TurnResult:
        """The user says ``text``: recognised speech, then the request; the turn's result."""
        self.host.push(self.host.recognized(text))
        return await self._turn(self.host.request(text))

    async def close(self) -> None:
        """The host hangs up; ``on_end`` runs as it does when a DP session ends."""
        connection = self.connection
        if self._run is None:
            return
        self.host.hang_up()
        try:
            await asyncio.wait_for(asyncio.shield(self._run), self.wait_seconds)
        except TimeoutError:
            self._run.cancel()
        finally:
            self._run = None
            if await self.services.live.detach(connection):
                await connection.perform(connection.core.ended())
                await connection.finish()

    async def _turn(self, request: Any) -> TurnResult:
        if self._run is None or self._run.done():
            raise ConversationClosed(self._closed_reason())
        started = self.host.clock()
        self.host.push(request)
        await self._settle()
        fresh = self.host.sent[self._seen :]
        self._seen = len(self.host.sent)
        return turn_result(fresh, started=started, session_variables=self.session.variables)

    async def _settle(self) -> None:
        """Wait until the server handled every frame and no turn runs."""
        try:
            async with asyncio.timeout(self.wait_seconds):
                while True:
                    await self._handled()
                    if not self.connection.turns.busy:
                        return
                    await self.connection.turns.settled()
        except TimeoutError:
            raise ConversationStuck(
                f"the turn did not end within {self.wait_seconds:g} s "
                "(twice HANDLER_TIMEOUT_SECONDS, plus 5)"
            ) from None

    async def _handled(self) -> None:
        assert self._run is not None
        handled = asyncio.ensure_future(self.host.handled())
        done, _ = await asyncio.wait({handled, self._run}, return_when=asyncio.FIRST_COMPLETED)
        if handled not in done:
            handled.cancel()
            if self._run.done():  # the socket closed: nothing more will be handled
                return

    def _closed_reason(self) -> str:
        code = self.host.closed_with
        return f"the server closed the session (code {code})" if code else "the session ended"


@dataclass
class Played:
    """A whole run: the init turn's result (if played) and each user turn's."""

    welcome: TurnResult | None
    turns: list[TurnResult] = field(default_factory=list)
    error: str | None = None  # why the run stopped early (a stuck or closed session)
    # The session's shared variables when it ended (after ``on_end``), as archived.
    variables: dict[str, Any] = field(default_factory=dict)


async def play(
    options: ControlOptions,
    user_turns: Sequence[str],
    *,
    claims: Mapping[str, Any] | None = None,
    variables: Mapping[str, Any] | None = None,
    welcome: bool = True,
) -> Played:
    """Run ``user_turns`` in one in-process session (after the init turn, as the DP
    does, unless ``welcome=False``); a run that stops early says why in ``error``."""
    conversation = InProcessConversation(options, claims=claims, variables=variables)
    played = Played(welcome=None)
    await conversation.start()
    try:
        if welcome:
            played.welcome = await conversation.welcome()
        for text in user_turns:
            played.turns.append(await conversation.say(text))
    except (ConversationStuck, ConversationClosed) as exc:
        played.error = str(exc)
    finally:
        await conversation.close()
        played.variables = dict(conversation.session.variables)
    return played


async def close_options(options: ControlOptions) -> None:
    """The handler's ``aclose`` (its pooled clients), as at server shutdown."""
    await close_handler(options.loaded, options.handler_timeout_seconds, log)
