"""Handler objects through a real uvicorn server: lifecycle hooks, idle prompts,
interruption, and each turn's latency in the session, its events and /metrics."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from orchestrator.control import protocol
from orchestrator.handlers import END_DISCONNECTED, END_SHUTDOWN, END_TERMINATED
from orchestrator.simulate import HostSimulator
from tests.orchestrator.backend.cluster_helpers import until
from tests.orchestrator.control.test_control_e2e import fetch_token
from tests.orchestrator.control_helpers import make_app
from tests.orchestrator.handlers_for_tests import hooked, interruptible
from tests.uvicorn_thread import ThreadedServer

API_KEY = secrets.token_urlsafe(32)
BACKEND = {"Authorization": f"Bearer {API_KEY}"}
TEST_HANDLERS = "tests.orchestrator.handlers_for_tests"


def said(messages: list[Any]) -> list[str]:
    """The texts the DP was asked to say, in order."""
    return [
        m.envelope.body["output"]["text"]
        for m in messages
        if m.envelope.name == "conversationResponse"
    ]


async def recognizing(host: HostSimulator) -> None:
    """The DP reports that the user started speaking."""
    await host.send(protocol.Envelope("event", "state", {"recognizing": True}))


@pytest.mark.anyio
async def test_hooks_hear_the_start_and_a_peer_closing_once() -> None:
    """on_start when the socket connects (before the init turn), on_end('disconnected')
    when the host goes away; a replaced connection does not end the conversation."""
    hooked.calls.clear()
    with ThreadedServer(make_app(conversation_handler=f"{TEST_HANDLERS}:hooked")) as server:
        issued = await fetch_token(server)
        session_id = issued["session_id"]
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as first:
            assert said(await first.start(settle=0.1)) == ["ready"]
            async with HostSimulator.connect(server.ws_url, issued["jwt"]) as second:
                assert said(await second.start(settle=0.1)) == ["ready"]
                assert said(await second.say("hi", settle=0.1)) == ["echo: hi"]
        await until(lambda: ("on_end", session_id, END_DISCONNECTED) in hooked.calls)
        await asyncio.sleep(0.2)
    assert hooked.calls == [
        ("on_start", session_id),
        ("on_start", session_id),
        ("on_end", session_id, END_DISCONNECTED),
        ("aclose",),
    ]


@pytest.mark.anyio
async def test_a_session_ended_through_the_api_ends_with_the_reason_terminated() -> None:
    hooked.calls.clear()
    app = make_app(conversation_handler=f"{TEST_HANDLERS}:hooked", api_keys=(API_KEY,))
    with ThreadedServer(app) as server:
        issued = await fetch_token(server)
        session_id = issued["session_id"]
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.1)
            async with httpx.AsyncClient(base_url=server.base_url, headers=BACKEND) as http:
                assert (await http.delete(f"/sessions/{session_id}")).status_code == 200
            await until(lambda: len(hooked.calls) >= 2)
    assert hooked.calls[-2:] == [("on_end", session_id, END_TERMINATED), ("aclose",)]


@pytest.mark.anyio
async def test_a_server_shutting_down_ends_live_conversations_with_the_reason_shutdown() -> None:
    hooked.calls.clear()
    with ThreadedServer(make_app(conversation_handler=f"{TEST_HANDLERS}:hooked")) as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.1)
            await asyncio.to_thread(server.stop)
    assert hooked.calls[-2:] == [("on_end", issued["session_id"], END_SHUTDOWN), ("aclose",)]


@pytest.mark.anyio
async def test_the_idle_prompt_is_said_once_per_silence() -> None:
    """IDLE_PROMPT_SECONDS after the last answer, the default handler asks once; only a
    user turn makes it ask again."""
    app = make_app(idle_prompt_seconds=0.3)
    with ThreadedServer(app) as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.05)
            first_silence = await host.collect(settle=1.0, within=3.0)
            assert said(first_silence) == ["Are you still there?"]
            assert said(await host.collect(settle=1.0, within=1.0)) == []
            assert said(await host.say("yes", settle=0.05)) == ["You said: yes"]
            assert said(await host.collect(settle=1.0, within=3.0)) == ["Are you still there?"]
        session = await app.state.store.get(issued["session_id"])
    dp_lines = [t.text for t in session.transcript if t.role == "dp"]
    assert dp_lines.count("Are you still there?") == 2


@pytest.mark.anyio
async def test_a_handler_object_idle_prompt_and_failing_hooks_never_end_the_socket() -> None:
    """A hook that raises (on_start) or hangs (on_idle) is logged and counted; turns go on."""
    app = make_app(
        conversation_handler=f"{TEST_HANDLERS}:failing_hooks",
        idle_prompt_seconds=0.1,
        handler_timeout_seconds=0.3,
    )
    with ThreadedServer(app) as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            assert said(await host.start(settle=0.05)) == ["ready"]
            assert said(await host.collect(settle=0.8, within=0.8)) == []
            assert said(await host.say("still here", settle=0.05)) == ["echo: still here"]
        failures = app.state.metrics.hook_failures
        assert failures.labels("on_start")._value.get() == 1
        assert failures.labels("on_idle")._value.get() >= 1


@asynccontextmanager
async def slow_turn_in_flight(
    handler: str = "interruptible",
) -> AsyncIterator[tuple[Any, HostSimulator, str]]:
    """A host whose "slow question" the interruptible handler is working on."""
    interruptible.cancelled.clear()
    app = make_app(conversation_handler=f"{TEST_HANDLERS}:{handler}")
    with ThreadedServer(app) as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.05)
            await host.send(host._request("slow question"))
            await asyncio.sleep(0.2)
            yield app, host, issued["session_id"]


@pytest.mark.anyio
async def test_a_new_user_turn_interrupts_an_interruptible_handler() -> None:
    """The slow turn is cancelled inside the handler; only the new turn's reply comes,
    and the transcript has no reply for the cancelled turn."""
    async with slow_turn_in_flight() as (app, host, session_id):
        assert said(await host.say("quick one", settle=0.3)) == ["answer to quick one"]
    session = await app.state.store.get(session_id)
    assert interruptible.cancelled == ["slow question"]
    lines = [(t.role, t.text) for t in session.transcript]
    assert lines == [
        ("dp", "ready"),
        ("user", "slow question"),
        ("user", "quick one"),
        ("dp", "answer to quick one"),
    ]


@pytest.mark.anyio
async def test_an_interrupted_turn_stays_silent_even_if_its_handler_swallows_the_cancel() -> None:
    """A handler that catches CancelledError and returns a reply anyway: the interrupted
    turn still says nothing (as when each handler ran in a task of its own)."""
    async with slow_turn_in_flight("swallowing") as (_, host, _):
        assert said(await host.say("quick one", settle=0.3)) == ["answer to quick one"]


@pytest.mark.anyio
async def test_the_user_starting_to_speak_interrupts_an_interruptible_handler() -> None:
    async with slow_turn_in_flight() as (app, host, _):
        await recognizing(host)
        await until(lambda: interruptible.cancelled == ["slow question"])
        assert said(await host.collect(settle=0.3, within=0.3)) == []
        assert said(await host.say("next", settle=0.1)) == ["answer to next"]
    assert app.state.metrics.turns_interrupted._value.get() == 1


async def read_turn_events(base_url: str, session_id: str, into: list[dict[str, Any]]) -> None:
    """Follow the session's SSE stream, keeping each ``turn`` event's data."""
    async with (
        httpx.AsyncClient(base_url=base_url, headers=BACKEND, timeout=30) as http,
        http.stream("GET", f"/sessions/{session_id}/events") as response,
    ):
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "turn":
                into.append(json.loads(line.removeprefix("data: "))["data"])


@pytest.mark.anyio
async def test_each_reply_carries_its_latency_in_the_session_its_events_and_metrics() -> None:
    app = make_app(api_keys=(API_KEY,))
    with ThreadedServer(app) as server:
        issued = await fetch_token(server)
        session_id = issued["session_id"]
        events: list[dict[str, Any]] = []
        follower = asyncio.create_task(read_turn_events(server.base_url, session_id, events))
        await asyncio.sleep(0.3)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.05)
            await host.say("hello", settle=0.05)
        await until(lambda: len(events) >= 3)
        follower.cancel()
        async with httpx.AsyncClient(base_url=server.base_url, headers=BACKEND) as http:
            record = (await http.get(f"/sessions/{session_id}")).json()
            metrics = (await http.get("/metrics")).text
    dp_entries = [t for t in record["transcript"] if t["role"] == "dp"]
    assert len(dp_entries) == 2
    for entry in dp_entries:
        latency = entry["latency_ms"]
        assert set(latency) == {"handler_done", "first_frame"}
        assert 0 <= latency["handler_done"] <= latency["first_frame"] < 5000
    user_entry = next(t for t in record["transcript"] if t["role"] == "user")
    assert "latency_ms" not in user_entry
    dp_events = [e for e in events if e["role"] == "dp"]
    assert [e["latency_ms"] for e in dp_events] == [t["latency_ms"] for t in dp_entries]
    for stage in ("handler_done", "first_frame"):
        assert f'orchestrator_turn_latency_seconds_count{{stage="{stage}"}} 2.0' in metrics


@pytest.mark.anyio
async def test_a_host_closing_with_the_slow_peer_code_itself_has_disconnected() -> None:
    """4008 is in the application range, so any client may send it: only the server's
    own drop (marked by its WebSocket stack) counts as closed_by_server."""
    hooked.calls.clear()
    with ThreadedServer(make_app(conversation_handler=f"{TEST_HANDLERS}:hooked")) as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            assert said(await host.start(settle=0.1)) == ["ready"]
            await host.connection.close(code=4008)
        await until(lambda: any(call[0] == "on_end" for call in hooked.calls))
    assert ("on_end", issued["session_id"], END_DISCONNECTED) in hooked.calls
