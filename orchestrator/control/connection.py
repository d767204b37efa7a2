"""One live control socket: the I/O around a ``ConversationCore``.

Reading never stops for a turn: the handler runs beside the receive loop
(``turns.TurnRunner``), so ``state`` events and responses keep flowing while a
handler works. Every change to the session is the core's; this layer reads
frames, sends text (closing on a peer that stops reading) and carries out the
core's actions.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from orchestrator.control.actions import (
    Actions,
    Close,
    IdleTimer,
    Interrupt,
    Publish,
    Save,
    Send,
    SentReply,
    SpeechChanged,
    StartIdle,
    StartTurn,
    turn_event,
)
from orchestrator.control.conversation import LOGGER_NAME, ConversationCore
from orchestrator.control.live import LiveConnections
from orchestrator.control.options import (
    BOUNDED_SENDS_EXTENSION,
    CLOSE_SLOW_PEER,
    CLOSE_TIMEOUT_SECONDS,
    ControlOptions,
    end_reason,
)
from orchestrator.control.transactions import PendingRequests
from orchestrator.control.turns import TurnRunner
from orchestrator.handlers import END_DISCONNECTED, Reply
from orchestrator.logs import error_reason, level_check
from orchestrator.metrics import Metrics
from orchestrator.sessions.events import EventHub, SessionEvent
from orchestrator.sessions.model import Session, VariableWriter
from orchestrator.sessions.store import SessionStore

if TYPE_CHECKING:
    from orchestrator.archive.writer import ArchiveWriter


logs_enabled_for = level_check(LOGGER_NAME)


@dataclass
class ControlServices:
    store: SessionStore
    events: EventHub
    options: ControlOptions
    live: LiveConnections[ControlConnection]
    metrics: Metrics | None = None
    archive: ArchiveWriter | None = None  # where sessions go when they end for good


class ControlConnection:
    """The live conversation on one socket; also the handler's ``Conversation``."""

    def __init__(
        self, websocket: WebSocket, session: Session, services: ControlServices, *, verified: bool
    ) -> None:
        self.websocket = websocket
        # Which socket exactly, and since when: the live registry names one connection,
        # and "newest wins" between instances compares start times.
        self.id = secrets.token_hex(6)
        self.started_at = time.time()
        self.services = services
        self.options = services.options
        self.metrics = services.metrics
        self.core = ConversationCore(
            session, services.options, verified=verified, metrics=services.metrics
        )
        self.log = self.core.log
        self._send_lock = asyncio.Lock()
        # What our WebSocket stack says of this socket (None under another server).
        self._bounded = bounded_sends(websocket)
        self._send_timeout = send_timeout_under(
            self._bounded, services.options.send_timeout_seconds
        )
        self._closing = False
        self._aborted = False
        self._run_task: asyncio.Task[Any] | None = None
        self.turns = TurnRunner(self)
        self._speech_changed: asyncio.Event | None = None  # made when a handler waits
        # Why the conversation ended: the first close (ours or the peer's) says.
        self.end_reason: str | None = None

    @property
    def session(self) -> Session:
        return self.core.session

    @property
    def pending(self) -> PendingRequests:
        return self.core.pending

    # --- Conversation API (for handlers, commands and the sessions API) ---------------

    async def respond(self, reply: Reply, *, input_text: str = "") -> None:
        timings = self.turns.timings
        await self.perform(self.core.respond(reply, input_text=input_text, timings=timings))

    async def speak(
        self, text: str, *, can_be_interrupted: bool = True, filter_commands: bool | None = None
    ) -> None:
        actions = self.core.speak(
            text,
            can_be_interrupted=can_be_interrupted,
            filter_commands=filter_commands,
            timings=self.turns.timings,
        )
        await self.perform(actions)

    @property
    def closing(self) -> bool:
        return self._closing

    async def speech_idle(self) -> None:
        while self.core.session.speech_state != "idle" and not self._closing:
            if self._speech_changed is None:
                self._speech_changed = asyncio.Event()
            await self._speech_changed.wait()

    async def stop_speaking(self) -> None:
        await self.perform(self.core.stop_speaking())

    async def set_variables(self, variables: Mapping[str, Any], *, by_model: bool = False) -> None:
        writer = VariableWriter.MODEL if by_model else VariableWriter.HANDLER
        await self.patch_variables(variables, writer)

    async def patch_variables(
        self, patch: Mapping[str, Any], writer: VariableWriter = VariableWriter.HANDLER
    ) -> None:
        """Merge ``patch`` into the shared variables (``None`` removes a name);
        ``TypeError``/``ValueError`` for values that are not plain JSON,
        ``VariablesRefused`` past ``writer``'s bound."""
        await self.perform(self.core.patch_variables(patch, writer))

    async def terminate(self) -> None:
        """End the session for good (through the API) and close the socket."""
        await self.perform(self.core.terminate())

    # --- carrying out the core's actions -------------------------------------------------

    async def perform(self, actions: Actions) -> None:
        for action in actions:
            if isinstance(action, Send):
                await self.send(action.text)
            elif isinstance(action, Publish):
                await self.publish(action.event_type, action.data)
            elif isinstance(action, Save):
                await self.persist()
            elif isinstance(action, StartTurn):
                self.turns.start_turn(action)
            elif isinstance(action, Close):
                await self.close(action.code, action.reason)
            elif isinstance(action, SentReply):
                action.timings.mark("first_frame")
                self.core.session.record_latency(action.turn, action.timings.as_ms())
                if self.followed:
                    await self.publish("turn", turn_event(action.turn, **action.extra))
            else:
                self._apply(action)

    def _apply(self, action: IdleTimer | StartIdle | Interrupt | SpeechChanged) -> None:
        """The actions carried out without waiting (also from timer and task callbacks)."""
        if not isinstance(action, SpeechChanged):
            self.turns.apply(action)
        elif self._speech_changed is not None:
            self._speech_changed.set()
            self._speech_changed = None

    async def send(self, text: str) -> None:
        if self._closing:
            return
        try:
            async with self._send_lock:
                if self._send_timeout is None:
                    await self.websocket.send_text(text)
                else:
                    async with asyncio.timeout(self._send_timeout):
                        await self.websocket.send_text(text)
        except TimeoutError:
            self.log.warning("peer stopped reading; closing", code=CLOSE_SLOW_PEER)
            await self.close(CLOSE_SLOW_PEER, "peer is not reading")
            return
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        self.core.sent()

    async def persist(self) -> None:
        try:
            await self.services.store.save(self.core.session)
        except Exception as exc:  # a store outage must not end the conversation
            self.log.warning("session not saved", error=error_reason(exc))

    @property
    def followed(self) -> bool:
        """Whether anyone may hear this session's events (else they need not be made)."""
        return self.services.events.followed(self.core.session.id)

    async def publish(self, event_type: str, data: dict[str, Any]) -> None:
        if not self.followed:
            return
        try:
            await self.services.events.publish(SessionEvent(self.core.session.id, event_type, data))
        except Exception as exc:
            self.log.warning("session event not published", error=error_reason(exc))

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the socket until the peer (or we) close it."""
        self._run_task = asyncio.current_task()
        receive = self.websocket.receive
        core = self.core
        try:
            while not self._closing:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    if logs_enabled_for(logging.INFO):
                        self.log.info("control socket closed", code=message.get("code"))
                    self._ended_by_peer(message.get("code"))
                    break
                text = message.get("text")
                actions = core.receive(text if text is not None else (message.get("bytes") or b""))
                if actions:
                    await self.perform(actions)
        except WebSocketDisconnect as exc:
            self._ended_by_peer(exc.code)
        except asyncio.CancelledError:
            if not self._aborted:
                raise
            # close() gave up on a peer that does not read: stop serving it.
            if self._run_task is not None:
                self._run_task.uncancel()
        finally:
            self._closing = True
            self.turns.stop()
            self._apply(SpeechChanged())  # a handler waiting for the speech state stops waiting
            self.core.pending.cancel_all()

    async def finish(self) -> None:
        """The conversation ended for good (not replaced): the handler's ``on_end``."""
        await self.turns.finish(self.end_reason or END_DISCONNECTED)

    def _ended_by_peer(self, code: int | None) -> None:
        """The socket closed under us: by the peer, or by our WebSocket stack dropping it."""
        if self.end_reason is None:
            dropped = self._bounded is not None and self._bounded.get("dropped") is True
            self.end_reason = end_reason(code, by_server=dropped)

    async def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        if self.end_reason is None:
            self.end_reason = end_reason(code, by_server=True)
        if self.websocket.application_state is WebSocketState.CONNECTED:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                    await self.websocket.close(code, reason)
            except TimeoutError:
                # The close frame cannot get through (the peer does not read).
                self.log.warning("close frame not delivered; dropping the connection")
                self._aborted = True
                if self._run_task is not None and self._run_task is not asyncio.current_task():
                    self._run_task.cancel()
            except (RuntimeError, OSError, WebSocketDisconnect):
                pass


def bounded_sends(websocket: WebSocket) -> dict[str, Any] | None:
    """The socket's ``BOUNDED_SENDS_EXTENSION`` (the dict itself: the stack marks a
    drop in it later), or ``None`` when the server does not give one."""
    extensions = websocket.scope.get("extensions") or {}
    bounded = extensions.get(BOUNDED_SENDS_EXTENSION)
    return bounded if isinstance(bounded, dict) else None


def send_timeout_under(bounded: Mapping[str, Any] | None, seconds: float) -> float | None:
    """How long a send may block, or ``None`` when the server already drops a peer
    whose sends stay blocked that long (no timer per send needed)."""
    if bounded is not None and bounded.get("timeout_seconds", float("inf")) <= seconds:
        return None
    return seconds
