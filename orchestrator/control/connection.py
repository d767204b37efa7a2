"""One live control socket: the I/O around a ``ConversationCore``.

Reading never stops for a turn: each ``conversationRequest`` runs as a task
(turns of one session in order), so ``state`` events and responses keep
flowing while a handler works. Every change to the session is the core's;
this layer reads frames, sends text (closing on a peer that stops reading),
runs the handler and carries out the core's actions.
"""

from __future__ import annotations

import asyncio
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
from orchestrator.control.conversation import ConversationCore
from orchestrator.control.options import (
    CLOSE_SLOW_PEER,
    CLOSE_TIMEOUT_SECONDS,
    ControlOptions,
    end_reason,
)
from orchestrator.control.transactions import PendingRequests
from orchestrator.handlers import END_DISCONNECTED, ConversationRequest, Reply, TurnTimings
from orchestrator.handlers.hooks import idle_reply, run_hook
from orchestrator.metrics import Metrics
from orchestrator.sessions.events import EventHub, SessionEvent
from orchestrator.sessions.model import Session
from orchestrator.sessions.store import SessionStore

if TYPE_CHECKING:
    from orchestrator.control.live import LiveConnections


@dataclass
class ControlServices:
    store: SessionStore
    events: EventHub
    options: ControlOptions
    live: LiveConnections
    metrics: Metrics | None = None


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
        self._turn_lock = asyncio.Lock()
        self._turns: set[asyncio.Task[None]] = set()
        self._hooks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._aborted = False
        self._run_task: asyncio.Task[Any] | None = None
        self.handler = services.options.loaded
        # The running turn's timings (its replies carry its latency); None between turns.
        self._timings: TurnTimings | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
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
        await self.perform(self.core.respond(reply, input_text=input_text, timings=self._timings))

    async def speak(
        self, text: str, *, can_be_interrupted: bool = True, filter_commands: bool | None = None
    ) -> None:
        actions = self.core.speak(
            text,
            can_be_interrupted=can_be_interrupted,
            filter_commands=filter_commands,
            timings=self._timings,
        )
        await self.perform(actions)

    async def speech_idle(self) -> None:
        while self.core.session.speech_state != "idle" and not self._closing:
            if self._speech_changed is None:
                self._speech_changed = asyncio.Event()
            await self._speech_changed.wait()

    async def stop_speaking(self) -> None:
        await self.perform(self.core.stop_speaking())

    async def set_variables(self, variables: Mapping[str, Any]) -> None:
        await self.patch_variables(variables)

    async def patch_variables(self, patch: Mapping[str, Any]) -> None:
        """Merge ``patch`` into the shared variables (``None`` removes a name);
        ``TypeError``/``ValueError`` for values that are not plain JSON."""
        await self.perform(self.core.patch_variables(patch))

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
                self._start_turn(action)
            elif isinstance(action, Close):
                await self.close(action.code, action.reason)
            elif isinstance(action, SentReply):
                action.timings.mark("first_frame")
                if action.turn.latency_ms is not None:
                    action.turn.latency_ms.update(action.timings.as_ms())
                await self.publish("turn", turn_event(action.turn, **action.extra))
            else:
                self._apply(action)

    def _apply(self, action: IdleTimer | StartIdle | Interrupt | SpeechChanged) -> None:
        """The actions carried out without waiting (also from timer and task callbacks)."""
        if isinstance(action, IdleTimer):
            self._set_idle_timer(action.deadline)
        elif isinstance(action, StartIdle):
            self._track(self._run_idle(action.seconds))
        elif isinstance(action, Interrupt):
            self._interrupt()
        elif self._speech_changed is not None:
            self._speech_changed.set()
            self._speech_changed = None

    async def send(self, text: str) -> None:
        if self._closing:
            return
        try:
            async with self._send_lock:
                await asyncio.wait_for(
                    self.websocket.send_text(text), self.options.send_timeout_seconds
                )
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
            self.log.warning("session not saved", error=type(exc).__name__)

    async def publish(self, event_type: str, data: dict[str, Any]) -> None:
        try:
            await self.services.events.publish(SessionEvent(self.core.session.id, event_type, data))
        except Exception as exc:
            self.log.warning("session event not published", error=type(exc).__name__)

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
            for task in (*self._turns, *self._hooks):
                task.cancel()
            self._set_idle_timer(None)
            self._apply(SpeechChanged())  # a handler waiting for the speech state stops waiting
            self.core.pending.cancel_all()

    def _ended_by_peer(self, code: int | None) -> None:
        if self.end_reason is None:
            self.end_reason = end_reason(code, by_server=False)

    async def close(self, code: int, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        if self.end_reason is None:
            self.end_reason = end_reason(code, by_server=True)
        if self.websocket.application_state is WebSocketState.CONNECTED:
            try:
                await asyncio.wait_for(self.websocket.close(code, reason), CLOSE_TIMEOUT_SECONDS)
            except TimeoutError:
                # The close frame cannot get through (the peer does not read).
                self.log.warning("close frame not delivered; dropping the connection")
                self._aborted = True
                if self._run_task is not None and self._run_task is not asyncio.current_task():
                    self._run_task.cancel()
            except (RuntimeError, OSError, WebSocketDisconnect):
                pass

    # --- hooks -------------------------------------------------------------------------

    def start(self) -> None:
        """The socket is live: the handler's ``on_start``, before any turn runs."""
        on_start = self.handler.on_start
        if on_start is None:
            return

        async def started() -> None:
            async with self._turn_lock:
                await self._hook("on_start", on_start, self.session)

        task = asyncio.create_task(started())
        self._hooks.add(task)
        task.add_done_callback(self._hooks.discard)

    async def finish(self) -> None:
        """The conversation ended for good (not replaced): the handler's ``on_end``."""
        on_end = self.handler.on_end
        if on_end is not None:
            await self._hook("on_end", on_end, self.session, self.end_reason or END_DISCONNECTED)

    async def _hook(self, name: str, call: Any, *args: Any) -> Any:
        return await run_hook(
            name,
            call,
            *args,
            seconds=self.options.handler_timeout_seconds,
            log=self.log,
            metrics=self.metrics,
        )

    def _set_idle_timer(self, deadline: float | None) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if deadline is not None and not self._closing:
            delay = max(0.0, deadline - self.core.clock())
            self._idle_timer = asyncio.get_running_loop().call_later(delay, self._idle_due)

    def _idle_due(self) -> None:
        self._idle_timer = None
        for action in self.core.idle_due():
            self._apply(action)  # type: ignore[arg-type]  # IdleTimer or StartIdle only

    def _interrupt(self) -> None:
        """Cancel the turn in flight and the queued ones (an interruptible handler)."""
        if not self._turns:
            return
        self.log.info("turn interrupted", cancelled=len(self._turns))
        if self.metrics is not None:
            self.metrics.turns_interrupted.inc(len(self._turns))
        for task in self._turns:
            task.cancel()

    # --- turns -------------------------------------------------------------------------

    def _start_turn(self, turn: StartTurn) -> None:
        self._track(self._run_turn(turn))

    def _track(self, turn: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(turn)
        self._turns.add(task)
        task.add_done_callback(self._turn_done)

    def _turn_done(self, task: asyncio.Task[None]) -> None:
        self._turns.discard(task)
        for action in self.core.turn_done():
            self._apply(action)  # type: ignore[arg-type]  # IdleTimer only

    async def _run_turn(self, turn: StartTurn) -> None:
        body = turn.body
        published = False
        try:
            async with self._turn_lock:
                if turn.user_turn is not None:
                    published = True
                    await self.publish("turn", turn_event(turn.user_turn))
                request = ConversationRequest(
                    text=body.text,
                    variables=body.variables,
                    is_init=body.is_init,
                    optional_args=body.optional_args,
                    session=self.core.session,
                    timings=turn.timings,
                )
                self._timings = turn.timings
                try:
                    await self._answer(request)
                finally:
                    self._timings = None
        except asyncio.CancelledError:
            if turn.user_turn is not None and not published and not self._closing:
                # Dropped before it ran (interrupted): followers still hear the user.
                await self.publish("turn", turn_event(turn.user_turn))
            raise

    async def _answer(self, request: ConversationRequest) -> None:
        reply: Reply | None
        started = time.perf_counter()
        try:
            reply = await asyncio.wait_for(
                self.handler.turn(request, self), self.options.handler_timeout_seconds
            )
        except TimeoutError:
            self.log.error(
                "conversation handler timed out", seconds=self.options.handler_timeout_seconds
            )
            reply = Reply(self.options.apology)
        except Exception:
            self.log.exception("conversation handler failed")
            reply = Reply(self.options.apology)
        request.timings.mark("handler_done")
        if self.metrics is not None:
            self.metrics.turns.inc()
            self.metrics.handler_latency.observe(time.perf_counter() - started)
        await self._say(reply, input_text=request.text)
        if self.metrics is not None:
            for stage, ms in request.timings.as_ms().items():
                self.metrics.turn_latency.labels(stage).observe(ms / 1000)

    async def _say(self, reply: Reply | None, *, input_text: str) -> None:
        if reply is not None:
            try:
                await self.respond(reply, input_text=input_text)
            except (TypeError, ValueError):
                # e.g. a Reply whose variables are not JSON: this turn is lost, not the socket.
                self.log.exception("reply could not be sent")
                await self.respond(Reply(self.options.apology), input_text=input_text)
        await self.persist()

    async def _run_idle(self, seconds: float) -> None:
        """The idle prompt: ``on_idle``'s answer said unprompted (after any turn)."""
        on_idle = self.handler.on_idle
        assert on_idle is not None  # the core only starts it for a handler that has one
        async with self._turn_lock:
            said = await self._hook("on_idle", on_idle, self.session, seconds)
            reply = idle_reply(said)
            if reply is not None:
                self.log.info("idle prompt", seconds=round(seconds, 1))
            await self._say(reply, input_text="")
