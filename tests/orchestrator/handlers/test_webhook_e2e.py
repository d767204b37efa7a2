"""The webhook handler end to end: a real uvicorn server with
``CONVERSATION_HANDLER=webhook``, a host socket, and a backend started by the
tests (the README's receiver, or a scripted one that checks every signature)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from orchestrator.handlers.signing import SIGNATURE_HEADER, sign
from orchestrator.simulate import HostSimulator
from tests.compression_bomb import gzip_bomb
from tests.conftest import random_secret
from tests.live_server import LiveServer
from tests.metrics_text import sample
from tests.orchestrator.control.test_control_e2e import fetch_token
from tests.orchestrator.control_helpers import make_app
from tests.orchestrator.handlers.webhook_receiver import Answer, Received, WebhookReceiver, echo
from tests.uvicorn_thread import ThreadedServer

ROOT = Path(__file__).resolve().parents[3]
APOLOGY = "Sorry, my backend is away."
OFFER = {"id": "offer", "component": "markdown", "data": {"text": "**50%** off"}}


def scripted_backend(received: Received) -> Answer:
    """The test backend: an offer with a card, variables and follow-up lines; three
    broken answers; an echo for anything else."""
    text = received.payload.get("text")
    if text == "offers":
        return Answer(json={"text": "Here is our offer.", "cards": [OFFER],
                            "variables": {"plan": "gold"},
                            "speak": ["It ends on Friday.", "Ask me anything else."]})  # fmt: skip
    if text == "break":
        return Answer(body=b"<html>oops</html>")
    if text == "crash":
        return Answer(500)
    if text == "bomb":
        return Answer(chunked=gzip_bomb(), headers={"Content-Encoding": "gzip"})
    return echo(received)


@pytest.fixture(scope="module")
def secret() -> str:
    return random_secret()


@pytest.fixture
def backend(secret: str) -> Iterator[WebhookReceiver]:
    with WebhookReceiver(secret) as receiver:
        receiver.turn_script = scripted_backend
        yield receiver


def webhook_app(backend: WebhookReceiver, secret: str, **overrides: Any) -> Starlette:
    values: dict[str, Any] = {
        "conversation_handler": "webhook",
        "webhook_url": backend.turn_url,
        "webhook_events_url": backend.events_url,
        "webhook_secret": secret,
        "handler_apology": APOLOGY,
        "handler_timeout_seconds": 3.0,
        **overrides,
    }
    return make_app(**values)


def names(messages: list[Any]) -> list[str]:
    return [message.envelope.name for message in messages]


@pytest.mark.anyio
async def test_a_host_converses_with_the_backend_cards_variables_and_follow_up_lines(
    backend: WebhookReceiver, secret: str
) -> None:
    app = webhook_app(backend, secret)
    with ThreadedServer(app) as server:
        issued = await fetch_token(server)
        session_id = issued["session_id"]
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            welcome = await host.start(settle=0.2)
            assert welcome[0].describe() == "DP: Welcome from the backend."
            [started] = backend.wait_for("session.started")
            assert (started.payload["session_id"], started.verdict) == (session_id, "ok")

            offer = await host.say("offers", settle=0.3)
            assert names(offer) == ["conversationResponse", "startSpeaking", "startSpeaking"]
            body = offer[0].envelope.body
            assert body["output"]["text"] == "Here is our offer. @showcards(offer)"
            assert body["variables"]["plan"] == "gold"
            assert body["variables"]["public-offer"] == {
                "component": "markdown",
                "data": {"text": "**50%** off"},
            }
            assert [m.envelope.body["text"] for m in offer[1:]] == [
                "It ends on Friday.",
                "Ask me anything else.",
            ]
            session = await app.state.store.get(session_id)
            assert session.variables["plan"] == "gold"
            dp_turns = [turn for turn in session.transcript if turn.role == "dp"]
            # each line of the turn carries its latency (ms from the request's arrival)
            assert all("first_frame" in (turn.latency_ms or {}) for turn in dp_turns[-3:])
            dp_lines = [turn.text for turn in dp_turns]
            assert dp_lines[-3:] == [
                "Here is our offer. @showcards(offer)",
                "It ends on Friday.",
                "Ask me anything else.",
            ]

            later = await host.say("anything else?", settle=0.2)
            assert later[0].describe() == "DP: Backend heard: anything else?"
            turns = backend.of("turn")
            assert [t.payload["text"] for t in turns] == ["", "offers", "anything else?"]
            assert {t.verdict for t in turns} == {"ok"}
            last = turns[-1].payload
            assert last["variables"] == {"plan": "gold"}
            assert last["dp_session_id"] == host.dp_session_id
            assert [line["text"] for line in last["transcript"]][-2:] == [
                "Ask me anything else.",
                "anything else?",
            ]
        [ended] = backend.wait_for("session.ended")
        assert ended.payload["reason"] == "disconnected"


@pytest.mark.anyio
async def test_a_bad_backend_reply_gives_the_apology_and_the_socket_stays_open(
    backend: WebhookReceiver, secret: str
) -> None:
    with ThreadedServer(webhook_app(backend, secret)) as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.1)
            for text in ("break", "crash", "bomb"):
                broken = await host.say(text, settle=0.1)
                assert broken[0].describe() == f"DP: {APOLOGY}"
            after = await host.say("still there?", settle=0.1)
            assert after[0].describe() == "DP: Backend heard: still there?"


@pytest.mark.anyio
async def test_an_idle_session_is_prompted_with_what_the_backend_answers(
    backend: WebhookReceiver, secret: str
) -> None:
    backend.event_script = lambda received: (
        Answer(json={"text": "Are you still with me?"})
        if received.event == "session.idle"
        else Answer(204)
    )
    with ThreadedServer(webhook_app(backend, secret, idle_prompt_seconds=0.3)) as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.05)
            prompt = await host.collect(settle=0.1, within=3.0)
            assert prompt[0].describe() == "DP: Are you still with me?"
            [idle] = backend.of("session.idle")
            assert idle.payload["idle_seconds"] >= 0.3
            assert idle.verdict == "ok"


@pytest.mark.anyio
async def test_a_session_ended_through_the_api_is_reported_as_terminated(
    backend: WebhookReceiver, secret: str
) -> None:
    api_key = random_secret()
    with ThreadedServer(webhook_app(backend, secret, api_keys=(api_key,))) as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.1)
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                response = await http.delete(
                    f"/sessions/{issued['session_id']}",
                    headers={"Authorization": f"Bearer {api_key}"},
                )
            assert response.status_code == 200
            await asyncio.sleep(0.1)
        [ended] = backend.wait_for("session.ended")
        assert ended.payload["reason"] == "terminated"


def readme_receiver() -> types.ModuleType:
    """The README's receiver block, as a module."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- readme-webhook-receiver:.*?-->\n```python\n(.*?)```", readme, re.S)
    assert block is not None, "README lost its webhook receiver block"
    module = types.ModuleType("readme_backend")
    exec(compile(block.group(1), "README.md", "exec"), module.__dict__)  # noqa: S102
    return module


@pytest.mark.anyio
async def test_the_readme_receiver_answers_turns_and_refuses_a_forged_request(
    secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    receiver = readme_receiver()
    with ThreadedServer(receiver.app) as readme_backend:
        url = f"{readme_backend.base_url}/turn"
        app = make_app(conversation_handler="webhook", webhook_url=url, webhook_secret=secret)
        with ThreadedServer(app) as server:
            issued = await fetch_token(server)
            async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
                welcome = await host.start(settle=0.1)
                assert welcome[0].describe() == "DP: Hello from your backend!"
                turn = await host.say("hello", settle=0.1)
                assert turn[0].describe() == "DP: You said hello"
        async with httpx.AsyncClient() as http:
            forged = await http.post(url, content=b'{"type": "turn"}')
        assert forged.status_code == 401


@pytest.mark.anyio
async def test_the_readme_receiver_refuses_a_replayed_request(
    secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A captured request sent again (same body, same signature) is refused."""
    monkeypatch.setenv("WEBHOOK_SECRET", secret)
    receiver = readme_receiver()
    body = json.dumps({"type": "turn", "is_init": False, "text": "pay me"}).encode()
    headers = {SIGNATURE_HEADER: sign(secret, body), "Content-Type": "application/json"}
    with ThreadedServer(receiver.app) as readme_backend:
        url = f"{readme_backend.base_url}/turn"
        async with httpx.AsyncClient() as http:
            first = await http.post(url, content=body, headers=headers)
            replayed = await http.post(url, content=body, headers=headers)
    assert first.status_code == 200
    assert first.json() == {"text": "You said pay me"}
    assert replayed.status_code == 401


def test_the_readme_receiver_stops_at_once_without_its_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not a 500 on every turn: importing it without WEBHOOK_SECRET fails."""
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    with pytest.raises(KeyError, match="WEBHOOK_SECRET"):
        readme_receiver()


def test_orchestrator_serve_and_simulate_talk_to_the_backend(
    backend: WebhookReceiver, secret: str, tmp_path: Path
) -> None:
    """The real command line: `orchestrator serve` with the webhook, `orchestrator simulate`."""
    script = tmp_path / "demo.txt"
    script.write_text("offers\nbreak\nhello\n")
    env = {
        "CONVERSATION_HANDLER": "webhook",
        "WEBHOOK_URL": backend.turn_url,
        "WEBHOOK_SECRET": secret,
        "HANDLER_APOLOGY": APOLOGY,
    }
    with LiveServer(env=env) as server:
        result = subprocess.run(
            [sys.executable, "-m", "orchestrator", "simulate", "--url", server.base_url,
             "--script", str(script), "--settle", "0.3"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        backend.wait_for("session.ended")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "DP: Welcome from the backend." in lines
    offer = lines.index("DP: Here is our offer.")
    assert lines[offer + 1 : offer + 3] == [
        "    [card offer: markdown]",
        "DP (unprompted): It ends on Friday.",
    ]
    assert f"DP: {APOLOGY}" in lines
    assert "DP: Backend heard: hello" in lines
    assert {r.verdict for r in backend.received} == {"ok"}
    assert backend.received[0].event == "session.started"
    assert "webhook request failed" in server.log_text
    assert "reply is not JSON" in server.log_text
    assert secret not in server.log_text


@pytest.mark.anyio
async def test_a_server_shutting_down_reports_the_end_before_closing_its_client(
    backend: WebhookReceiver, secret: str
) -> None:
    server = ThreadedServer(webhook_app(backend, secret))
    with server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.1)
            await asyncio.to_thread(server.stop)
    [ended] = backend.wait_for("session.ended")
    assert ended.payload["reason"] == "shutdown"


@pytest.mark.anyio
async def test_a_session_over_its_budget_hears_the_budget_reply_without_a_request(
    backend: WebhookReceiver, secret: str
) -> None:
    """The webhook's turns share the LLM handler's per-session budget (issue 23)."""
    app = webhook_app(backend, secret, handler_requests_per_minute=3,
                      handler_budget_reply="One moment, please.")  # fmt: skip
    with ThreadedServer(app) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            before = (await http.get("/metrics")).text
            issued = await fetch_token(server)
            async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
                await host.start(settle=0.1)  # the init turn is a request too
                said = [(await host.say(text, settle=0.05))[0].describe()
                        for text in ("one", "two", "three", "four")]  # fmt: skip
            after = (await http.get("/metrics")).text
    # session.started, the init turn and "one" spend the 3 requests (events count too).
    assert said == ["DP: Backend heard: one", "DP: One moment, please.",
                    "DP: One moment, please.", "DP: One moment, please."]  # fmt: skip
    assert [turn.payload["text"] for turn in backend.of("turn")] == ["", "one"]
    labels = {"handler": "webhook", "reason": "requests"}
    name = "orchestrator_handler_refusals_total"
    # Three turns, and session.ended when it went out before the scrape.
    assert sample(after, name, **labels) - sample(before, name, **labels) in (3, 4)


@pytest.mark.anyio
async def test_reconnecting_with_the_same_token_does_not_start_a_fresh_budget(
    backend: WebhookReceiver, secret: str
) -> None:
    """Review of issue 23: closing the control socket released the session's budget,
    so a reconnect loop with one token sent turns without limit."""
    app = webhook_app(backend, secret, handler_requests_per_minute=3,
                      handler_budget_reply="One moment, please.")  # fmt: skip
    with ThreadedServer(app) as server:
        issued = await fetch_token(server)
        said = []
        for text in ("one", "two", "three"):
            async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
                await host.start(settle=0.05)  # the init turn is a request too
                said.append((await host.say(text, settle=0.05))[0].describe())
    assert said == ["DP: Backend heard: one", "DP: One moment, please.",
                    "DP: One moment, please."]  # fmt: skip
    # session.started, the init turn and "one" spent the 3 requests.
    assert [turn.payload["text"] for turn in backend.of("turn")] == ["", "one"]


@pytest.mark.anyio
async def test_a_reconnect_loop_sends_no_session_events_past_the_budget(
    backend: WebhookReceiver, secret: str
) -> None:
    """Review of issue 23: each connection sent session.started and session.ended
    unbudgeted (~100 requests/s from one token); events are charged like turns."""
    app = webhook_app(backend, secret, handler_requests_per_minute=5)
    with ThreadedServer(app) as server:
        issued = await fetch_token(server)
        for _ in range(12):
            async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
                await host.start(settle=0.02)
        await asyncio.sleep(0.3)  # the last session.ended goes out after the close
    sent = sum(len(backend.of(event)) for event in ("session.started", "session.ended", "turn"))
    assert sent == 5


@pytest.mark.anyio
async def test_webhook_variables_stop_at_their_bound_and_never_lock_the_backend_out(
    backend: WebhookReceiver, secret: str
) -> None:
    """Issue 23: a backend reply's variables go through the session's one bound.
    Each turn adds 12 KB: past three quarters of 64 KiB the change is refused whole
    (logged, counted), the turn's text is still said, nothing kept is cut, and the
    backend's own PATCH still fits in the quarter kept for it."""
    api_key = random_secret()

    def filler(received: Received) -> Answer:
        name = f"v{len(received.payload['variables'])}"
        return Answer(json={"text": f"noted {name}", "variables": {name: "x" * 12_000}})

    backend.turn_script = filler
    app = webhook_app(backend, secret, api_keys=(api_key,))
    with ThreadedServer(app) as server:
        issued = await fetch_token(server)
        session_id = issued["session_id"]
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.2)  # the init turn sets v0
            said = [(await host.say(f"turn {n}", settle=0.2))[0].describe() for n in range(5)]
            assert said == [f"DP: noted v{n}" for n in (1, 2, 3, 4, 4)]  # v4 refused, twice
            session = await app.state.store.get(session_id)
            assert sorted(session.variables) == ["v0", "v1", "v2", "v3"]
            assert all(len(value) == 12_000 for value in session.variables.values())
            async with httpx.AsyncClient(base_url=server.base_url) as client:
                patched = await client.patch(
                    f"/sessions/{session_id}/variables",
                    headers={"Authorization": f"Bearer {api_key}"},
                    json={"backend": "y" * 12_000},
                )
                assert patched.status_code == 200, patched.text
                metrics = await client.get(
                    "/metrics", headers={"Authorization": f"Bearer {api_key}"}
                )
        assert 'orchestrator_variables_refused_total{writer="handler"} 2.0' in metrics.text
