"""The handler timeout of one connection's turns, with one timer for all of them.

``asyncio.timeout`` arms a timer when a turn starts and cancels it when the
turn ends: under uvloop each is a libuv timer made, started, stopped and
closed, for every turn, although turns almost never time out. A connection
runs its turns one at a time, so ``TurnDeadline`` keeps the running turn's
deadline as a number and a single timer per connection: when the timer fires
for a turn that already ended it re-arms for the running turn's deadline, or
stays off until the next turn. It keeps no object per turn alive.

The semantics are ``asyncio.timeout``'s: the turn's task is cancelled at the
deadline and the cancellation comes out of ``run`` as ``TimeoutError``; a
cancellation from elsewhere stays a cancellation; a handler that swallows the
timeout's cancellation gives its result. As ``asyncio.wait_for`` did, a
cancellation from elsewhere that the handler swallowed is raised all the same:
an interrupted turn must not go on to speak. Hooks get the same bound, one
``TurnDeadline`` each (``hooks.within``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class TurnDeadline:
    """``run(awaitable)``: await it in this task, ``TimeoutError`` past ``seconds``
    (one turn at a time per instance)."""

    __slots__ = ("_armed_for", "_deadline", "_expired", "_stopped", "_task", "_timer", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._deadline: float | None = None  # the running turn's, on the loop's clock
        self._task: asyncio.Task[Any] | None = None  # the task running it
        self._expired = False  # the timer cancelled the running turn
        self._timer: asyncio.TimerHandle | None = None  # fires at or before _deadline
        self._armed_for = 0.0  # the deadline the timer was set for
        self._stopped = False  # the connection is done: no timer once no turn runs

    @property
    def armed(self) -> bool:
        """Whether the connection's timer is set."""
        return self._timer is not None

    async def run(self, awaitable: Awaitable[T]) -> T:
        task = asyncio.current_task()
        if task is None or self._task is not None:
            raise RuntimeError("TurnDeadline.run needs a task and runs one turn at a time")
        loop = asyncio.get_running_loop()
        cancelling = task.cancelling()
        deadline = loop.time() + self.seconds
        self._task, self._deadline, self._expired = task, deadline, False
        if self._timer is None:
            self._arm(loop, deadline)
        # Else the timer is set for an earlier turn's deadline and re-arms then.
        try:
            result = await awaitable
        except asyncio.CancelledError as exc:
            if self._end() and task.uncancel() <= cancelling:
                raise TimeoutError from exc
            raise
        except BaseException:
            if self._end():
                task.uncancel()
            raise
        if self._end():
            task.uncancel()  # the handler swallowed the timeout's cancellation
        if task.cancelling() > cancelling:
            raise asyncio.CancelledError  # and another one: the turn must not go on
        return result

    def stop(self) -> None:
        """The connection is done: the timer goes now, or when the running turn
        ends (its handler may ignore the cancellation: its deadline still holds)."""
        self._stopped = True
        if self._task is None:
            self._disarm()

    def _end(self) -> bool:
        """The turn is over: whether the timer had cancelled it."""
        self._task = self._deadline = None
        if self._stopped:
            self._disarm()
        return self._expired

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        self._timer = loop.call_at(deadline, self._due)
        self._armed_for = deadline

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        self._timer = None
        deadline, task = self._deadline, self._task
        if deadline is None or task is None:
            return  # no turn running: the next one arms the timer
        if deadline > self._armed_for:
            # Set for an earlier turn: wait for this one's (comparing deadlines, not
            # the clock, which the loop may round: asyncio.timeout trusts the timer too).
            self._arm(asyncio.get_running_loop(), deadline)
            return
        self._expired = True
        task.cancel()
