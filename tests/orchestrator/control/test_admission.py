"""HandshakeAdmission: at most ``per_pass`` control handshakes start in one pass of
the event loop; the rest wait in arrival order, and none is lost."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from orchestrator.control.admission import HandshakeAdmission

pytestmark = pytest.mark.anyio


class PassCounter:
    """Counts passes of the running loop (a callback that schedules itself again)."""

    def __init__(self) -> None:
        self.passes = 0
        self._stopped = False
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.passes += 1
        if not self._stopped:
            asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._stopped = True


async def storm(admission: HandshakeAdmission, count: int) -> tuple[list[int], Counter[int]]:
    """``count`` handshakes arriving together: the order they got in, and how
    many got in during each pass."""
    counter = PassCounter()
    order: list[int] = []
    per_pass: Counter[int] = Counter()

    async def handshake(number: int) -> None:
        await admission.enter()
        order.append(number)
        per_pass[counter.passes] += 1

    await asyncio.gather(*(handshake(number) for number in range(count)))
    counter.stop()
    return order, per_pass


async def test_at_most_per_pass_handshakes_start_in_one_pass_and_all_get_in() -> None:
    admission = HandshakeAdmission(per_pass=3)
    order, per_pass = await storm(admission, 20)
    assert sorted(order) == list(range(20))
    assert max(per_pass.values()) <= 3 and len(per_pass) >= 7
    assert admission.waiting == 0


async def test_handshakes_get_in_in_arrival_order() -> None:
    order, _ = await storm(HandshakeAdmission(per_pass=2), 12)
    assert order == list(range(12))


async def test_with_no_storm_a_handshake_never_waits() -> None:
    admission = HandshakeAdmission(per_pass=4)
    for _ in range(3):
        await admission.enter()  # no other handshake: in at once
        assert admission.waiting == 0
        await asyncio.sleep(0)


async def test_zero_means_no_limit() -> None:
    order, per_pass = await storm(HandshakeAdmission(per_pass=0), 50)
    assert sorted(order) == list(range(50)) and len(per_pass) == 1


async def test_a_handshake_cancelled_while_waiting_gives_its_place_away() -> None:
    """A host that gives up (or a server stopping) leaves the line; the rest go on."""
    admission = HandshakeAdmission(per_pass=1)
    first = asyncio.create_task(admission.enter())
    waiting = [asyncio.create_task(admission.enter()) for _ in range(3)]
    await asyncio.sleep(0)
    assert admission.waiting == 3
    waiting[0].cancel()
    await asyncio.gather(first, *waiting[1:])
    assert waiting[0].cancelled() and admission.waiting == 0


def test_each_event_loop_starts_with_an_empty_line() -> None:
    admission = HandshakeAdmission(per_pass=1)

    async def crowd() -> None:
        tasks = [asyncio.create_task(admission.enter()) for _ in range(5)]
        await asyncio.sleep(0)
        assert admission.waiting == 4
        for task in tasks:
            task.cancel()  # the loop ends with handshakes still in line

    asyncio.run(crowd())

    async def alone() -> None:
        await admission.enter()
        assert admission.waiting == 0

    asyncio.run(alone())


def test_a_negative_per_pass_is_refused() -> None:
    with pytest.raises(ValueError, match="per_pass"):
        HandshakeAdmission(per_pass=-1)
