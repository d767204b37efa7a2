"""Timeouts for many concurrent awaits on one event loop, sharing a few timers.

``asyncio.timeout(seconds)`` schedules a timer for each use and cancels it on
the way out. Under uvloop each of those is a libuv timer handle made and
dropped, which is a large part of a short conversation turn. Here every
deadline is rounded up to the next ``SLOT_SECONDS`` boundary, and the awaits
whose deadlines fall on the same boundary share one timer: the caller enters
an ``asyncio.timeout(None)`` (which schedules nothing) and ``arm``s it; when
the slot's timer fires, the ones still armed are rescheduled to now, so they
end exactly as ``asyncio.timeout`` ends them (``TimeoutError`` in the
awaiting task), at most ``SLOT_SECONDS`` later than asked. An await that
finishes is ``disarm``ed at once; a slot's timer is made once and never
cancelled.
"""

from __future__ import annotations

import asyncio
import math

SLOT_SECONDS = 0.01
NEVER = -1  # the slot of a timeout that does not expire (``seconds`` not finite)


class SharedDeadlines:
    """The slots of one event loop: boundary number -> the timeouts due then."""

    __slots__ = ("_slots", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._slots: dict[int, set[asyncio.Timeout]] = {}

    def arm(self, timeout: asyncio.Timeout, seconds: float) -> int:
        """Expire the entered ``timeout`` ``seconds`` from now (rounded up); its slot."""
        if not math.isfinite(seconds):
            return NEVER
        slot = math.ceil((self.loop.time() + seconds) / SLOT_SECONDS)
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = set()
            self.loop.call_at(slot * SLOT_SECONDS, self._expire, slot)
        members.add(timeout)
        return slot

    def disarm(self, timeout: asyncio.Timeout, slot: int) -> None:
        members = self._slots.get(slot)
        if members is not None:
            members.discard(timeout)

    def _expire(self, slot: int) -> None:
        members = self._slots.pop(slot, ())
        now = self.loop.time()
        for timeout in members:
            timeout.reschedule(now)  # the awaiting task is cancelled as by asyncio.timeout

    def __len__(self) -> int:
        """Timeouts still armed (for tests and diagnostics)."""
        return sum(map(len, self._slots.values()))


_current: SharedDeadlines | None = None


def shared_deadlines() -> SharedDeadlines:
    """The running loop's ``SharedDeadlines`` (a new loop gets new ones)."""
    global _current
    loop = asyncio.get_running_loop()
    deadlines = _current
    if deadlines is None or deadlines.loop is not loop:
        deadlines = _current = SharedDeadlines(loop)
    return deadlines
