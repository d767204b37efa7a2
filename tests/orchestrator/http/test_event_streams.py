"""orchestrator.http.event_streams: what the caps count, and that a closed
stream leaves nothing behind (served by a real uvicorn in this process)."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import starlette
import uvicorn

import orchestrator
from orchestrator.http.event_streams import (
    MAX_DERIVED_STREAMS,
    StreamCaps,
    StreamRefused,
    StreamSlots,
    derived_total,
)
from orchestrator.http.sessions_api import SessionsApi
from tests.orchestrator.control_helpers import make_app
from tests.uvicorn_thread import ThreadedServer

CAPS = StreamCaps(per_session=2, per_session_backend=3, per_address=3, total=5)
API_KEY = "k" * 40


# Deep enough that every allocation the server makes has one of its frames in the trace.
FRAMES = 20
# The server's side: the test's httpx client allocates in this process too.
SERVER_CODE = [
    tracemalloc.Filter(True, str(Path(module.__file__).parent / "*"), all_frames=True)
    for module in (orchestrator, starlette, uvicorn, asyncio)
    if module.__file__ is not None
]


def server_memory() -> int:
    """Bytes the server's code holds now (after a full collection)."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(SERVER_CODE)
    return sum(stat.size for stat in snapshot.statistics("filename"))


def refusal(call: Callable[[], object]) -> str:
    with pytest.raises(StreamRefused) as refused:
        call()
    return refused.value.reason


def test_each_cap_refuses_with_its_reason_and_a_release_gives_the_place_back() -> None:
    """UI streams of a session, API-key streams of it, an address's UI streams and
    all of them are counted apart; releasing twice frees one place."""
    slots = StreamSlots(CAPS)
    ui = [slots.acquire("s1", "10.0.0.1", backend=False) for _ in range(2)]
    assert refusal(lambda: slots.acquire("s1", "10.0.0.2", backend=False)) == "session"
    slots.acquire("s2", "10.0.0.1", backend=False)
    assert refusal(lambda: slots.acquire("s3", "10.0.0.1", backend=False)) == "address"
    slots.acquire("s1", None, backend=True)  # the API key: its own count, no address
    slots.acquire("s3", "10.0.0.2", backend=False)
    assert slots.open == 5
    assert refusal(lambda: slots.acquire("s4", None, backend=True)) == "global"
    ui[0].release()
    ui[0].release()
    assert slots.open == 4
    slots.acquire("s1", "10.0.0.3", backend=False)
    assert refusal(lambda: slots.acquire("s5", "10.0.0.4", backend=False)) == "global"


def test_refusals_are_429_for_a_client_and_503_for_the_process() -> None:
    session = StreamRefused("session", "x").as_api_error()
    busy = StreamRefused("global", "x").as_api_error()
    assert (session.status, session.code, busy.status, busy.code) == (
        429,
        "too_many_streams",
        503,
        "server_busy",
    )
    for error in (session, busy):
        assert error.headers["Retry-After"] == "15"
        assert error.headers["Connection"] == "close"


@pytest.mark.parametrize(
    ("file_limit", "total"),
    [
        (1024, 256),
        (20_000, 5000),
        (1_048_576, MAX_DERIVED_STREAMS),
        (None, MAX_DERIVED_STREAMS),
        (2, 1),
    ],
)
def test_the_default_total_is_a_quarter_of_the_open_file_limit(
    file_limit: int | None, total: int
) -> None:
    assert derived_total(file_limit) == total


def test_closed_streams_leave_no_subscriber_count_or_memory_behind() -> None:
    """Streams closed by the client (after the snapshot, or right after the
    headers), ended by ``DELETE``, and refused ones: afterwards the hub has no
    subscriber, the caps count nothing, and of what the server's code allocated
    for 240 more streams, less than 32 KiB is still held (not the RSS: freed
    memory may stay with the allocator)."""
    app = make_app(api_keys=(API_KEY,), rate_limit="1000/second")
    api: SessionsApi = app.state.sessions_api
    hub = api.events
    caps = api.streams.caps
    backend = {"Authorization": f"Bearer {API_KEY}"}
    with ThreadedServer(app) as server, httpx.Client(timeout=2) as http:

        def new_session() -> tuple[dict[str, str], str]:
            issued = http.get(server.base_url + "/api/jwt").json()
            url = f"{server.base_url}/sessions/{issued['session_id']}"
            assert http.get(url, headers=backend).status_code == 200  # a full record from now
            return {"Authorization": f"Bearer {issued['jwt']}"}, url

        def follow(ui: dict[str, str], url: str, index: int) -> None:
            with (
                http.stream("GET", url + "/events", headers=ui) as first,
                http.stream("GET", url + "/events", headers=backend) as second,
            ):
                if index % 3 == 2:
                    return  # closed right after the headers
                lines = first.iter_lines()
                assert next(lines) == "event: snapshot"
                if index % 3 == 0:
                    assert http.delete(url, headers=backend).status_code == 200
                    if index % 30 == 0:
                        # The stream finishes on its own (a second's grace for "ended").
                        assert "event: terminated" in list(lines)
                    else:
                        assert "event: terminated" in lines  # closed in the grace
                else:
                    # Past a cap: refused, and nothing kept for it.
                    api.streams.caps = StreamCaps(1, 1, 1, 2)
                    assert http.get(url + "/events", headers=ui).status_code == 429
                    api.streams.caps = caps
                assert second.status_code == 200

        def wait_until_closed() -> None:
            for _ in range(100):
                if api.streams.open == 0 and not hub._subscribers:
                    break
                time.sleep(0.02)
            assert api.streams.open == 0
            assert api.streams.tracked() == 0
            assert not hub._subscribers

        # Sessions made first, so what they hold is not counted as the streams'.
        warm_up = [new_session() for _ in range(40)]
        measured = [new_session() for _ in range(120)]
        for index, (ui, url) in enumerate(warm_up):  # caches, pools, first of everything
            follow(ui, url, index)
        wait_until_closed()
        # Traced from here: what the measured streams allocated and left behind.
        tracemalloc.start(FRAMES)
        try:
            for index, (ui, url) in enumerate(measured):
                follow(ui, url, index)
            wait_until_closed()
            left = server_memory()
        finally:
            tracemalloc.stop()
    # A stream's state left behind would be KiBs each (its queue alone ~2 KiB).
    assert left < 32 * 1024, left
