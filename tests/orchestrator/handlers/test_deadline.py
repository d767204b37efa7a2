"""TurnDeadline: the handler timeout of a connection's turns, as ``asyncio.timeout``
behaves, with one timer for the connection instead of one per turn."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from orchestrator.handlers.deadline import TurnDeadline

pytestmark = pytest.mark.anyio


@contextmanager
def timers_made() -> Iterator[list[float]]:
    """The deadlines of the timers that TurnDeadlines set while inside."""
    loop = asyncio.get_running_loop()
    made: list[float] = []
    real_call_at = loop.call_at

    def call_at(when: float, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if getattr(callback, "__func__", None) is TurnDeadline._due:
            made.append(when)
        return real_call_at(when, callback, *args, **kwargs)

    loop.call_at = call_at  # type: ignore[method-assign]
    try:
        yield made
    finally:
        del loop.call_at


async def answer(value: str, *, after: float = 0.0) -> str:
    await asyncio.sleep(after)
    return value


async def in_task(deadline: TurnDeadline, awaitable: Any) -> Any:
    """``deadline.run(awaitable)`` in a task of its own, as a turn runs."""
    return await asyncio.create_task(deadline.run(awaitable))


async def test_turns_that_end_in_time_share_one_timer_and_give_their_results() -> None:
    deadline = TurnDeadline(5.0)
    with timers_made() as made:
        results = [await in_task(deadline, answer(f"turn {n}")) for n in range(20)]
    assert results == [f"turn {n}" for n in range(20)]
    assert len(made) == 1  # armed by the first turn, kept for the next ones
    assert deadline.armed
    deadline.stop()
    assert not deadline.armed


async def test_a_turn_past_its_deadline_times_out_and_its_task_is_not_left_cancelled() -> None:
    deadline = TurnDeadline(0.05)
    seen: list[int] = []

    async def turn() -> None:
        try:
            await deadline.run(answer("late", after=5.0))
        except TimeoutError:
            task = asyncio.current_task()
            assert task is not None
            seen.append(task.cancelling())
            await asyncio.sleep(0)  # the task goes on, as the apology is sent
            seen.append(-1)

    await asyncio.wait_for(asyncio.create_task(turn()), 2.0)
    assert seen == [0, -1]


async def test_a_later_turn_gets_its_own_full_time_from_a_timer_set_for_an_earlier_one() -> None:
    seconds = 0.3
    deadline = TurnDeadline(seconds)
    loop = asyncio.get_running_loop()
    with timers_made() as made:
        assert await in_task(deadline, answer("quick")) == "quick"
        await asyncio.sleep(seconds / 2)  # the timer still waits for the first turn's deadline
        started = loop.time()
        with pytest.raises(TimeoutError):
            await in_task(deadline, answer("slow", after=5.0))
        timed_out_after = loop.time() - started
    assert timed_out_after >= seconds * 0.95  # not at the first turn's deadline
    assert len(made) == 2  # the first turn's timer, re-armed once for the second
    assert made[1] == pytest.approx(started + seconds, abs=0.01)


async def test_a_timer_that_fires_between_turns_stays_off_until_the_next_turn() -> None:
    deadline = TurnDeadline(0.05)
    assert await in_task(deadline, answer("quick")) == "quick"
    await asyncio.sleep(0.15)
    assert not deadline.armed
    with timers_made() as made:
        assert await in_task(deadline, answer("again")) == "again"
    assert len(made) == 1 and deadline.armed
    deadline.stop()


async def test_a_turn_still_running_when_the_connection_stops_keeps_its_deadline() -> None:
    """The socket closed and the turn was cancelled, but its handler holds on (a
    cleanup that waits): the deadline still ends it, and then the timer goes."""
    deadline = TurnDeadline(0.2)
    loop = asyncio.get_running_loop()

    async def clinging() -> None:
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            await asyncio.sleep(100)
            raise

    turn = asyncio.create_task(deadline.run(clinging()))
    await asyncio.sleep(0.05)
    started = loop.time()
    turn.cancel()
    deadline.stop()
    with pytest.raises(asyncio.CancelledError):  # a cancellation still, not a timeout
        await asyncio.wait_for(turn, 2.0)
    assert loop.time() - started < 1.0
    assert not deadline.armed


async def test_a_turn_ending_after_the_connection_stopped_takes_the_timer_with_it() -> None:
    deadline = TurnDeadline(5.0)
    turn = asyncio.create_task(deadline.run(answer("never", after=5.0)))
    await asyncio.sleep(0.01)
    turn.cancel()
    deadline.stop()
    assert deadline.armed  # the turn may still need it
    with pytest.raises(asyncio.CancelledError):
        await turn
    assert not deadline.armed


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    deadline = TurnDeadline(5.0)
    turn = asyncio.create_task(deadline.run(answer("never", after=5.0)))
    await asyncio.sleep(0.01)
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn
    deadline.stop()


async def swallows_cancellation(started: asyncio.Event | None = None) -> str:
    """A handler that catches its cancellation and returns anyway."""
    if started is not None:
        started.set()
    try:
        await asyncio.sleep(5.0)
    except asyncio.CancelledError:
        return "swallowed"
    return "slept"


async def test_a_handler_that_swallows_the_timeout_gives_its_result() -> None:
    async def turn() -> tuple[str, int]:
        result = await TurnDeadline(0.05).run(swallows_cancellation())
        task = asyncio.current_task()
        assert task is not None
        return result, task.cancelling()

    assert await asyncio.wait_for(asyncio.create_task(turn()), 2.0) == ("swallowed", 0)


async def test_a_swallowed_cancellation_from_elsewhere_is_raised_all_the_same() -> None:
    """An interrupted turn must not go on to speak, whatever its handler does."""
    deadline = TurnDeadline(5.0)
    started = asyncio.Event()
    turn = asyncio.create_task(deadline.run(swallows_cancellation(started)))
    await started.wait()
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn
    deadline.stop()


async def test_a_handler_error_after_the_timeout_is_the_handlers_and_uncancels() -> None:
    async def fails_when_cancelled() -> str:
        try:
            await asyncio.sleep(5.0)
        except asyncio.CancelledError:
            raise ValueError("broken handler") from None
        return "slept"

    async def turn() -> int:
        with pytest.raises(ValueError, match="broken handler"):
            await TurnDeadline(0.05).run(fails_when_cancelled())
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    assert await asyncio.wait_for(asyncio.create_task(turn()), 2.0) == 0


async def test_one_turn_at_a_time() -> None:
    deadline = TurnDeadline(5.0)
    first = asyncio.create_task(deadline.run(answer("first", after=0.05)))
    await asyncio.sleep(0)
    second = answer("second")
    with pytest.raises(RuntimeError, match="one turn at a time"):
        await in_task(deadline, second)
    second.close()
    assert await first == "first"
    deadline.stop()
