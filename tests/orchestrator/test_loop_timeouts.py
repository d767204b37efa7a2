"""orchestrator.loop_timeouts: awaits share one timer per slot and still end as
``asyncio.timeout`` ends them, never early."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest

from orchestrator.handlers.hooks import within
from orchestrator.loop_timeouts import NEVER, SLOT_SECONDS, SharedDeadlines, shared_deadlines


class ManualLoop:
    """A loop stand-in with a clock the test moves and the timers it was asked for."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.timers: list[tuple[float, Callable[..., Any], tuple[Any, ...]]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> None:
        self.timers.append((when, callback, args))


class RecordingTimeout:
    """What ``SharedDeadlines`` calls on a timeout: ``reschedule``."""

    def __init__(self) -> None:
        self.rescheduled_to: float | None = None

    def reschedule(self, when: float) -> None:
        self.rescheduled_to = when


def deadlines_on(loop: ManualLoop) -> SharedDeadlines:
    return SharedDeadlines(loop)  # type: ignore[arg-type]  # only time() and call_at()


def test_deadlines_in_one_slot_share_one_timer_set_no_earlier_than_asked() -> None:
    loop = ManualLoop()
    deadlines = deadlines_on(loop)
    timeouts = [RecordingTimeout() for _ in range(100)]
    slots = {deadlines.arm(t, 5.0) for t in timeouts}  # type: ignore[arg-type]
    assert len(slots) == 1 and len(loop.timers) == 1 and len(deadlines) == 100
    when = loop.timers[0][0]
    assert loop.now + 5.0 <= when <= loop.now + 5.0 + SLOT_SECONDS + 1e-9


def test_deadlines_in_different_slots_get_a_timer_each() -> None:
    loop = ManualLoop()
    deadlines = deadlines_on(loop)
    for seconds in (1.0, 1.0, 2.0, 3.0):
        deadlines.arm(RecordingTimeout(), seconds)  # type: ignore[arg-type]
    assert sorted(when for when, _, _ in loop.timers) == sorted({w for w, _, _ in loop.timers})
    assert len(loop.timers) == 3


def test_a_slot_firing_expires_only_the_timeouts_still_armed() -> None:
    loop = ManualLoop()
    deadlines = deadlines_on(loop)
    finished, running = RecordingTimeout(), RecordingTimeout()
    slot = deadlines.arm(finished, 1.0)  # type: ignore[arg-type]
    assert deadlines.arm(running, 1.0) == slot  # type: ignore[arg-type]
    deadlines.disarm(finished, slot)  # type: ignore[arg-type]
    when, callback, args = loop.timers[0]
    loop.now = when
    callback(*args)
    assert running.rescheduled_to == when and finished.rescheduled_to is None
    assert len(deadlines) == 0


@pytest.mark.parametrize("seconds", [math.inf, math.nan])
def test_a_timeout_that_is_not_finite_never_expires(seconds: float) -> None:
    loop = ManualLoop()
    deadlines = deadlines_on(loop)
    timeout = RecordingTimeout()
    assert deadlines.arm(timeout, seconds) == NEVER  # type: ignore[arg-type]
    assert loop.timers == [] and len(deadlines) == 0
    deadlines.disarm(timeout, NEVER)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_within_raises_timeout_error_in_the_task_after_its_seconds() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await within(asyncio.sleep(10), 0.05)
    assert loop.time() - started >= 0.05  # never early
    assert len(shared_deadlines()) == 0


@pytest.mark.anyio
async def test_within_that_finishes_in_time_leaves_nothing_armed() -> None:
    assert await within(asyncio.sleep(0, result="done"), 5.0) == "done"
    assert len(shared_deadlines()) == 0


@pytest.mark.anyio
async def test_concurrent_withins_expire_separately_by_their_own_deadlines() -> None:
    """One of two awaits sharing a slot finishes; only the other times out."""

    async def late() -> str:
        await asyncio.sleep(10)
        return "late"

    async def early() -> str:
        await asyncio.sleep(0.01)
        return "early"

    results = await asyncio.gather(
        within(late(), 0.1), within(early(), 0.1), return_exceptions=True
    )
    assert isinstance(results[0], TimeoutError) and results[1] == "early"


def test_each_event_loop_gets_its_own_deadlines() -> None:
    async def current() -> SharedDeadlines:
        return shared_deadlines()

    first, second = asyncio.run(current()), asyncio.run(current())
    assert first is not second and first.loop is not second.loop
