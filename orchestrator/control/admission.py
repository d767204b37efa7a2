"""Control-socket handshakes a few at a time, so live conversations keep answering.

A handshake costs several times what a turn does (the token, the session, the
accept). When a thousand video hosts connect at once (a deploy, a restart, a
campaign start, or an attacker's flood), taking them as they come fills each
pass of the event loop with handshakes, and every live session's reply waits
behind all of them. ``HandshakeAdmission`` lets about ``per_pass`` control
handshakes start in one pass (the count resets at the next pass's callback,
so at most twice that); the rest wait in arrival order and go a batch per
pass, so frames of established sockets are read and answered between
batches. A host connecting into a storm waits longer for its accept (the same
work is done, in another order); with no storm a handshake never waits.
"""

from __future__ import annotations

import asyncio
from collections import deque


class HandshakeAdmission:
    """One per server process: ``await enter()`` before a handshake's work."""

    def __init__(self, per_pass: int) -> None:
        """``per_pass``: handshakes started per event-loop pass; ``0``: no limit."""
        if per_pass < 0:
            raise ValueError("per_pass must be 0 (no limit) or more")
        self.per_pass = per_pass
        self._started = 0  # in the current pass
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_pass_scheduled = False

    @property
    def waiting(self) -> int:
        """Handshakes waiting for their pass."""
        return len(self._waiting)

    async def enter(self) -> None:
        """Return when this handshake may go on (at once unless this pass is full)."""
        if self.per_pass == 0:
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests): nothing carries over
            self._loop, self._started, self._next_pass_scheduled = loop, 0, False
            self._waiting.clear()
        if not self._waiting and self._started < self.per_pass:
            self._started += 1
            self._schedule_next_pass(loop)
            return
        ticket = loop.create_future()
        self._waiting.append(ticket)
        self._schedule_next_pass(loop)
        await ticket  # cancelled (the server stopping): it just leaves the line

    def _schedule_next_pass(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._next_pass_scheduled:
            self._next_pass_scheduled = True
            loop.call_soon(self._next_pass)

    def _next_pass(self) -> None:
        """A new pass of the loop: the next batch in line may start."""
        self._next_pass_scheduled = False
        self._started = 0
        waiting = self._waiting
        while waiting and self._started < self.per_pass:
            ticket = waiting.popleft()
            if not ticket.done():  # a cancelled one gives its place away
                ticket.set_result(None)
                self._started += 1
        if (waiting or self._started) and self._loop is not None:
            self._schedule_next_pass(self._loop)
