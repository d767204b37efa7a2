"""The LLM handler end to end: a real uvicorn server, a host on its control socket, and
an OpenAI-compatible server started by the test (the real ``openai`` client between them)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from orchestrator.control import protocol
from orchestrator.sessions.model import Session
from orchestrator.simulate import HostSimulator
from tests.fake_openai import (
    Answer,
    FakeOpenAI,
    ToolCallPlan,
    card_and_variable_script,
)
from tests.orchestrator.control.test_control_e2e import fetch_token
from tests.orchestrator.control_helpers import make_app
from tests.orchestrator.test_cli import simulate
from tests.uvicorn_thread import ThreadedServer

ROOT = Path(__file__).resolve().parents[3]
KEY = "sk-e2e-" + "z" * 40
APOLOGY = "Sorry, something broke. Say it again?"


def llm_server(fake: FakeOpenAI, **overrides: Any) -> ThreadedServer:
    app = make_app(
        conversation_handler="llm",
        llm_base_url=fake.base_url,
        llm_api_key=KEY,
        llm_model="e2e-model",
        llm_welcome="Hello {claims.name}!",
        handler_apology=APOLOGY,
        **overrides,
    )
    return ThreadedServer(app)


async def stored(server: ThreadedServer, session_id: str) -> Session:
    session: Session = await server.app.state.store.get(session_id)
    return session


@pytest.mark.anyio
async def test_hello_gets_the_models_answer_with_its_card_variable_and_latency(
    fake: FakeOpenAI,
) -> None:
    fake.script += card_and_variable_script("Here is the menu. Enjoy!")
    with llm_server(fake) as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            welcome = await host.start(settle=0.2)
            assert welcome[0].envelope.body["output"]["text"] == "Hello !"
            replies = await host.say("hello", settle=0.3)
        response = next(m.envelope for m in replies if m.envelope.name == "conversationResponse")
        assert response.body["output"]["text"] == "Here is the menu. Enjoy! @showcards(menu)"
        assert response.body["variables"]["public-menu"] == {
            "component": "markdown",
            "data": {"text": "**Menu**"},
        }
        session = await stored(server, issued["session_id"])
    assert session.variables["llm-city"] == "Paris"
    assert fake.received[0].headers["authorization"] == f"Bearer {KEY}"
    assert fake.messages(0)[-1] == {"role": "user", "content": "hello"}
    reply = session.transcript[-1]
    assert reply.role == "dp"
    assert reply.latency_ms is not None
    assert {"first_token", "first_sentence", "handler_done", "first_frame"} <= set(reply.latency_ms)
    assert 0 < reply.latency_ms["first_token"] <= reply.latency_ms["first_sentence"]


@pytest.mark.anyio
@pytest.mark.parametrize("interruption", ["new turn", "recognizing"])
async def test_an_interruption_cancels_the_stream_mid_way_and_keeps_only_what_was_said(
    fake: FakeOpenAI, interruption: str
) -> None:
    fake.script.append(Answer("Once upon a time. " + "There was more. " * 100, delay=0.03))
    with llm_server(fake, llm_speech="sentences") as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.1)
            first = await host.say("tell me a long story", settle=0.2)
            assert first[0].envelope.body["output"]["text"] == "Once upon a time."
            closed_before = fake.streams_closed_early
            if interruption == "new turn":
                after = await host.say("stop", settle=0.3)
                texts = [m.envelope.body["output"]["text"] for m in after
                         if m.envelope.name == "conversationResponse"]  # fmt: skip
                assert texts == ["You said: stop."]
            else:
                await host.send(protocol.Envelope("event", "state", {"recognizing": True}))
            for _ in range(100):
                if fake.streams_closed_early > closed_before:
                    break
                await asyncio.sleep(0.02)
            assert fake.streams_closed_early == closed_before + 1
            await asyncio.sleep(0.2)
            session = await stored(server, issued["session_id"])
    said = [(t.role, t.text) for t in session.transcript]
    expected = [("user", "tell me a long story"), ("dp", "Once upon a time.")]
    if interruption == "new turn":
        expected += [("user", "stop"), ("dp", "You said: stop.")]
    assert said == [("dp", "Hello !"), *expected]


@pytest.mark.anyio
async def test_an_api_error_gives_the_apology_and_the_socket_stays_open(fake: FakeOpenAI) -> None:
    fake.script.append(Answer(status=500, error={"message": "down", "type": "server_error"}))
    with llm_server(fake) as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.1)
            failed = await host.say("hello", settle=0.2)
            assert failed[0].envelope.body["output"]["text"] == APOLOGY
            again = await host.say("hello again", settle=0.2)
            assert again[0].envelope.body["output"]["text"] == "You said: hello again."
        metrics = server.app.state.metrics
        text = metrics.registry.get_sample_value(
            "orchestrator_llm_errors_total", {"reason": "server_error"}
        )
    assert text is not None and text >= 1


def test_simulate_works_against_the_llm_handler(
    fake: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "demo.txt"
    script.write_text("hello\nshow me\n")
    fake.script += [
        Answer("Hi there."),
        Answer(tool_calls=[ToolCallPlan("show_card", '{"id": "c", "component": "x", "data": {}}')]),
        Answer("Look."),
    ]
    with llm_server(fake) as server:
        code, out, err = simulate(capsys, "--url", server.base_url, "--script", str(script))
    assert code == 0, out + err
    lines = out.splitlines()
    assert "DP: Hi there." in lines
    assert "    [card c: x]" in lines
