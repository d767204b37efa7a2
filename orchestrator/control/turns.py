"""The handler's side of one connection: turns, hooks, idle prompts, interruption.

Each turn runs as a task, one at a time and in order (``on_start`` and idle
prompts take their turn like turns do), so the socket keeps being read while a
handler works. An interruptible handler's turns are cancelled instead when
the core says so. The idle timer exists only when the core keeps an idle
watch (``IDLE_PROMPT_SECONDS`` and a handler with ``on_idle``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, Protocol

from orchestrator.control.actions import IdleTimer, Interrupt, StartIdle, StartTurn, turn_event
from orchestrator.control.conversation import ConversationCore
from orchestrator.control.options import ControlOptions
from orchestrator.handlers import Conversation, ConversationRequest, Reply, TurnTimings
from orchestrator.handlers.deadline import TurnDeadline
from orchestrator.handlers.hooks import idle_reply, run_hook
from orchestrator.metrics import Metrics


class TurnHost(Conversation, Protocol):
    """What the runner needs of its connection (``ControlConnection``, which
    imports this module: the protocol keeps the imports one way)."""

    @property
    def core(self) -> ConversationCore: ...

    @property
    def options(self) -> ControlOptions: ...

    @property
    def log(self) -> Any: ...

    @property
    def metrics(self) -> Metrics | None: ...

    @property
    def closing(self) -> bool: ...

    @property
    def followed(self) -> bool: ...

    async def publish(self, event_type: str, data: dict[str, Any]) -> None: ...

    async def persist(self) -> None: ...


class TurnRunner:
    """Runs the connection's handler: its turns and its hooks."""

    def __init__(self, connection: TurnHost) -> None:
        self.connection = connection
        self.core = connection.core
        self.options = connection.options
        self.handler = connection.options.loaded
        self.log = connection.log
        self.metrics = connection.metrics
        self._lock = asyncio.Lock()
        self._turns: set[asyncio.Task[None]] = set()
        self._hooks: set[asyncio.Task[None]] = set()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._deadline = TurnDeadline(self.options.handler_timeout_seconds)
        # The running turn's timings (its replies carry its latency); None between turns.
        self.timings: TurnTimings | None = None

    # --- what the core asks --------------------------------------------------------

    def start_turn(self, turn: StartTurn) -> None:
        self._track(self._run_turn(turn))

    def apply(self, action: IdleTimer | StartIdle | Interrupt) -> None:
        """Carried out at once (also from the timer and task callbacks)."""
        if isinstance(action, IdleTimer):
            self._set_idle_timer(action.deadline)
        elif isinstance(action, StartIdle):
            self._track(self._run_idle(action.seconds))
        else:
            self._interrupt()

    def stop(self) -> None:
        """The socket closed: cancel what is running or waiting."""
        for task in (*self._turns, *self._hooks):
            task.cancel()
        self._set_idle_timer(None)
        self._deadline.stop()

    @property
    def busy(self) -> bool:
        """Whether a turn (or idle prompt) runs or waits."""
        return bool(self._turns)

    async def settled(self) -> None:
        """Return once no turn (nor idle prompt) runs or waits: an in-process
        caller's "the turn is over" (``orchestrator.testing``)."""
        while self._turns:
            await asyncio.wait(set(self._turns))

    # --- hooks ---------------------------------------------------------------------

    def start(self) -> None:
        """The socket is live: the handler's ``on_start``, before any turn runs."""
        on_start = self.handler.on_start
        if on_start is None:
            return

        async def started() -> None:
            async with self._lock:
                await self._hook("on_start", on_start, self.connection.session)

        task = asyncio.create_task(started())
        self._hooks.add(task)
        task.add_done_callback(self._hooks.discard)

    async def finish(self, reason: str) -> None:
        """The conversation ended for good (not replaced): the handler's ``on_end``."""
        on_end = self.handler.on_end
        if on_end is not None:
            await self._hook("on_end", on_end, self.connection.session, reason)

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
        if deadline is not None and not self.connection.closing:
            delay = max(0.0, deadline - self.core.clock())
            self._idle_timer = asyncio.get_running_loop().call_later(delay, self._idle_due)

    def _idle_due(self) -> None:
        self._idle_timer = None
        for action in self.core.idle_due():
            self.apply(action)  # type: ignore[arg-type]  # IdleTimer or StartIdle only

    def _interrupt(self) -> None:
        """Cancel the turn in flight and the queued ones (an interruptible handler)."""
        if not self._turns:
            return
        self.log.info("turn interrupted", cancelled=len(self._turns))
        if self.metrics is not None:
            self.metrics.turns_interrupted.inc(len(self._turns))
        for task in self._turns:
            task.cancel()

    # --- turns ---------------------------------------------------------------------

    def _track(self, turn: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(turn)
        self._turns.add(task)
        task.add_done_callback(self._turn_done)

    def _turn_done(self, task: asyncio.Task[None]) -> None:
        self._turns.discard(task)
        for action in self.core.turn_done():
            self.apply(action)  # type: ignore[arg-type]  # IdleTimer only

    async def _run_turn(self, turn: StartTurn) -> None:
        body = turn.body
        connection = self.connection
        published = False
        try:
            async with self._lock:
                if turn.user_turn is not None:
                    published = True
                    if connection.followed:
                        await connection.publish("turn", turn_event(turn.user_turn))
                request = ConversationRequest(
                    body.text, body.variables, body.is_init, body.optional_args,
                    connection.session, turn.timings,
                )  # fmt: skip
                self.timings = turn.timings
                try:
                    await self._answer(request)
                finally:
                    self.timings = None
                # After every frame of the answer went out: a follower (``simulate``)
                # knows the turn is over, however many pieces it was said in.
                await connection.publish("answered", {"frames_out": connection.session.frames_out})
        except asyncio.CancelledError:
            if (
                turn.user_turn is not None
                and not published
                and not connection.closing
                and connection.followed
            ):
                # Dropped before it ran (interrupted): followers still hear the user.
                await connection.publish("turn", turn_event(turn.user_turn))
            raise

    async def _answer(self, request: ConversationRequest) -> None:
        reply: Reply | None
        started = time.perf_counter()
        try:
            reply = await self._deadline.run(self.handler.turn(request, self.connection))
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
            self.metrics.observe_turn(request.timings.as_ms())

    async def _say(self, reply: Reply | None, *, input_text: str) -> None:
        connection = self.connection
        if reply is not None:
            try:
                await connection.respond(reply, input_text=input_text)
            except (TypeError, ValueError):
                # e.g. a Reply whose variables are not JSON: this turn is lost, not the socket.
                self.log.exception("reply could not be sent")
                await connection.respond(Reply(self.options.apology), input_text=input_text)
        await connection.persist()

    async def _run_idle(self, seconds: float) -> None:
        """The idle prompt: ``on_idle``'s answer said unprompted (after any turn)."""
        on_idle = self.handler.on_idle
        assert on_idle is not None  # the core only starts it for a handler that has one
        async with self._lock:
            said = await self._hook("on_idle", on_idle, self.connection.session, seconds)
            reply = idle_reply(said)
            if reply is not None:
                self.log.info("idle prompt", seconds=round(seconds, 1))
            await self._say(reply, input_text="")
