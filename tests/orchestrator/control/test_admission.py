"""HandshakeAdmission: at most ``per_pass`` control handshakes start in one pass of
the event loop; the rest wait in arrival order, and none is lost."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from starlette.websockets import WebSocket

from orchestrator.control.admission import HandshakeAdmission
from orchestrator.control.endpoint import ControlEndpoint
from orchestrator.control.options import BOUNDED_SENDS_EXTENSION
from tests.orchestrator.control_helpers import make_app

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

    # Bounded: a pass chain that stopped would hang the storm, not fail it.
    await asyncio.wait_for(asyncio.gather(*(handshake(number) for number in range(count))), 5)
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


def starts_at_once(admission: HandshakeAdmission) -> bool:
    """Whether ``enter()`` returns without suspending (no pass waited)."""
    entering = admission.enter()
    try:
        entering.send(None)
    except StopIteration:
        return True
    entering.close()
    return False


async def test_with_no_storm_a_handshake_never_waits() -> None:
    admission = HandshakeAdmission(per_pass=4)
    for _ in range(3):
        assert starts_at_once(admission)  # no other handshake: in at once
        await asyncio.sleep(0)


async def test_a_full_pass_makes_the_next_handshake_wait() -> None:
    admission = HandshakeAdmission(per_pass=2)
    assert starts_at_once(admission) and starts_at_once(admission)
    assert not starts_at_once(admission)


async def test_the_next_pass_starts_afresh_also_when_nobody_waited() -> None:
    admission = HandshakeAdmission(per_pass=2)
    assert starts_at_once(admission) and starts_at_once(admission)  # this pass is full
    for _ in range(3):
        await asyncio.sleep(0)  # the next passes
    assert starts_at_once(admission) and starts_at_once(admission)


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
    """A loop that ended with handshakes still in line (never drained) leaves
    nothing behind for the next one."""
    admission = HandshakeAdmission(per_pass=1)
    old_loop = asyncio.new_event_loop()
    tasks = [old_loop.create_task(admission.enter()) for _ in range(5)]
    old_loop.run_until_complete(asyncio.sleep(0))
    assert admission.waiting > 0
    old_loop.close()  # closed as it stands: those in line are never released
    for task in tasks:
        task._log_destroy_pending = False  # type: ignore[attr-defined]  # on purpose

    async def alone() -> None:
        assert starts_at_once(admission)
        assert admission.waiting == 0

    asyncio.run(alone())


def test_a_negative_per_pass_is_refused() -> None:
    with pytest.raises(ValueError, match="per_pass"):
        HandshakeAdmission(per_pass=-1)


class RefusingAuthenticator:
    """Fails the test if the handshake gets as far as reading the token."""

    async def identify(self, websocket: WebSocket) -> None:
        raise AssertionError("the token was read for a host that had left")


async def test_a_handshake_whose_host_left_while_it_waited_is_dropped_unread() -> None:
    """Our WebSocket stack marks a lost connection in the scope; the endpoint then
    skips the token, the session and the accept."""
    services = make_app().state.services
    endpoint = ControlEndpoint(RefusingAuthenticator(), services, HandshakeAdmission(1))  # type: ignore[arg-type]
    scope = {
        "type": "websocket", "path": "/ws", "query_string": b"", "headers": [],
        "client": ("127.0.0.1", 1), "extensions": {BOUNDED_SENDS_EXTENSION: {"lost": True}},
    }  # fmt: skip
    sent: list[object] = []

    async def receive() -> dict[str, object]:
        return {"type": "websocket.disconnect", "code": 1006}

    async def send(message: object) -> None:
        sent.append(message)

    await endpoint.handle(WebSocket(scope, receive, send))
    assert sent == []
