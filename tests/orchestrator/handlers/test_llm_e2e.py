"""The LLM handler end to end: a real uvicorn server, a host on its control socket, and
an OpenAI-compatible server started by the test (the real ``openai`` client between them)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.control import protocol
from orchestrator.sessions.model import Session
from orchestrator.simulate import HostSimulator
from tests.compression_bomb import gzip_bomb
from tests.fake_openai import (
    Answer,
    FakeOpenAI,
    ToolCallPlan,
    card_and_variable_script,
)
from tests.metrics_text import sample
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
@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Answer(status=500, error={"message": "down", "type": "server_error"}), "server_error"),
        (Answer(body=gzip_bomb(), headers={"Content-Encoding": "gzip"}), "compressed"),
    ],
    ids=["500", "gzip bomb"],
)
async def test_an_api_error_gives_the_apology_and_the_socket_stays_open(
    fake: FakeOpenAI, answer: Answer, reason: str
) -> None:
    fake.script.append(answer)
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
            "orchestrator_llm_errors_total", {"reason": reason}
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


# --- the session's budget (issue 23: one session could spend the LLM budget) ----------

BUDGET_REPLY = "Slow down, please."
FLOOD_TEXT = "x" * 60_000  # a frame's worth of text (CONTROL_MAX_FRAME_BYTES is 64 KiB)


def request_chars(fake: FakeOpenAI) -> list[int]:
    """What each request to the model sent, as the budget counts it."""
    return [len(json.dumps(r.body["messages"], ensure_ascii=False)) for r in fake.received]


async def scraped(server: ThreadedServer) -> str:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    return response.text


@pytest.mark.anyio
async def test_a_flood_of_long_turns_makes_at_most_the_budgets_requests_each_cut_short(
    fake: FakeOpenAI,
) -> None:
    """The finding: each new turn interrupted the one in flight, whose request had been
    sent in full; 195 requests of 13.4 MB in 5 s. Now each turn's words are cut to
    LLM_MAX_INPUT_CHARS and the session's requests stop at its budget."""
    fake.script += [Answer("Thinking it over.", hang=0.5) for _ in range(40)]
    refused = {"handler": "llm", "reason": "requests"}
    with llm_server(
        fake, handler_requests_per_minute=10, handler_budget_reply=BUDGET_REPLY
    ) as server:
        before = await scraped(server)
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.1)
            reader = asyncio.create_task(host.collect(settle=1.0, within=30.0))
            for _ in range(30):  # under the socket's frame limit
                await host.send(host._request(FLOOD_TEXT))
                await asyncio.sleep(0.05)
            messages = await reader
        after = await scraped(server)
    assert 1 <= len(fake.received) <= 10
    assert {len(fake.messages(i)[-1]["content"]) for i in range(len(fake.received))} == {4000}
    said = [m.envelope.body["output"]["text"] for m in messages
            if m.envelope.name == "conversationResponse"]  # fmt: skip
    assert said and said[-1] == BUDGET_REPLY
    # Every turn past the 10th was refused before its request (some earlier ones were
    # interrupted before theirs reached the server, but were charged: they were sent).
    name = "orchestrator_handler_refusals_total"
    assert sample(after, name, **refused) - sample(before, name, **refused) >= 20
    truncated = "orchestrator_llm_input_truncated_total"
    assert sample(after, truncated) - sample(before, truncated) >= len(fake.received)


@pytest.mark.anyio
async def test_reconnecting_with_the_same_token_does_not_start_a_fresh_budget(
    fake: FakeOpenAI,
) -> None:
    """Review of issue 23: the budget was released whenever a socket closed, so
    closing and reopening the control socket with the same token gave a fresh
    one each time (640 requests, 7.7 MB in 8 s from one session)."""
    with llm_server(
        fake, handler_requests_per_minute=3, handler_budget_reply=BUDGET_REPLY
    ) as server:
        issued = await fetch_token(server)
        said = []
        for _ in range(3):
            async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
                await host.start(settle=0.05)  # the welcome asks no model
                for _ in range(2):
                    replies = await host.say("hello", settle=0.05)
                    said.append(replies[0].envelope.body["output"]["text"])
    assert len(fake.received) == 3
    assert said == ["You said: hello."] * 3 + [BUDGET_REPLY] * 3


@pytest.mark.anyio
async def test_the_input_budget_counts_the_whole_prompt_and_refuses_past_it(
    fake: FakeOpenAI,
) -> None:
    with llm_server(
        fake, handler_input_chars_per_minute=30_000, handler_budget_reply=BUDGET_REPLY
    ) as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.1)
            said = []
            for _ in range(8):
                replies = await host.say(FLOOD_TEXT, settle=0.05)
                said.append(replies[0].envelope.body["output"]["text"])
        text = await scraped(server)
    sent = request_chars(fake)
    assert len(sent) >= 2
    assert sum(sent) <= 30_000 < sum(sent) + sent[-1]  # the next one would not have fit
    assert said[len(sent) :] == [BUDGET_REPLY] * (8 - len(sent))
    assert sample(text, "orchestrator_handler_refusals_total", handler="llm", reason="input")


@pytest.mark.anyio
async def test_a_busy_real_conversation_is_never_refused(fake: FakeOpenAI) -> None:
    """The defaults against a conversation busier than a real one: 20 turns in a few
    seconds (a real minute has fewer), each with a tool round (two requests), a long
    system prompt and the history full."""
    prompt = "You are the concierge of the Grand Hotel. " * 50  # ~2,100 characters
    line = "Could you tell me more about the rooms with a view of the lake, and the spa? "
    for index in range(20):
        fake.script += card_and_variable_script(f"Answer {index}. " + "All rooms are fine. " * 20)
    with llm_server(fake, llm_system_prompt=prompt) as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.1)
            for index in range(20):
                replies = await host.say(line * 2, settle=0.02)
                text = replies[0].envelope.body["output"]["text"]
                assert text.startswith(f"Answer {index}. "), text
    assert len(fake.received) == 40
    assert max(request_chars(fake)) > 8000  # the history was full


def test_simulate_hears_every_sentence_of_a_slow_answer_before_the_next_line(
    fake: FakeOpenAI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """LLM_SPEECH=sentences with pauses longer than --settle between sentences:
    simulate waits for the server's end of the turn, so the next line neither
    cuts the answer off nor interrupts the stream."""
    script = tmp_path / "demo.txt"
    script.write_text("tell me three things\nhello\n")
    pieces = ["First of all. ", "Second", " of all. ", "Third ", "of all."]
    fake.script += [Answer("".join(pieces), pieces=pieces, delay=0.4), Answer("Hi.")]
    closed_before = fake.streams_closed_early
    with llm_server(fake, llm_speech="sentences") as server:
        code, out, err = simulate(capsys, "--url", server.base_url, "--script", str(script))
    assert code == 0, out + err
    lines = out.splitlines()
    start = lines.index("you: tell me three things")
    assert lines[start:] == [
        "you: tell me three things",
        "DP: First of all.",
        # The last sentence ends with the stream, while the DP was still busy: together.
        "DP (unprompted): Second of all. Third of all.",
        "you: hello",
        "DP: Hi.",
    ]
    assert fake.streams_closed_early == closed_before
    assert fake.messages(-1)[-1] == {"role": "user", "content": "hello"}
