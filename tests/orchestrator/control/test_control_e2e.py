"""End to end through a real uvicorn server: token from /api/jwt, the simulator
as the video host, the conversation, and shutdown."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from orchestrator.control.admission import HandshakeAdmission
from orchestrator.sessions.events import SessionEvent
from orchestrator.sessions.model import SessionStatus
from orchestrator.simulate import HostSimulator
from tests.orchestrator.control_helpers import make_app, say
from tests.uvicorn_thread import ThreadedServer

ROOT = Path(__file__).resolve().parents[3]


async def fetch_token(server: ThreadedServer) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.get("/api/jwt")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.anyio
async def test_token_simulator_welcome_turn_speech_and_clean_close() -> None:
    """The whole flow a user tries first, over real HTTP and WebSocket connections."""
    app = make_app()
    with ThreadedServer(app) as server:
        issued = await fetch_token(server)
        session_id = issued["session_id"]
        store = app.state.store
        assert (await store.get(session_id)).status is SessionStatus.ISSUED

        events: list[SessionEvent] = []

        async def follow() -> None:
            async with app.state.services.events.subscribe(session_id) as queue:
                while True:
                    events.append(await queue.get())

        follower = asyncio.create_task(follow())
        await asyncio.sleep(0)
        control_url = f"{server.ws_url}"
        async with HostSimulator.connect(control_url, issued["jwt"]) as host:
            welcome = await host.start(settle=0.2)
            assert "Hello!" in welcome[0].describe()
            turn = await host.say("hello there", settle=0.2)
            assert turn[0].describe() == "DP: You said: hello there"
            announced = await host.say("announce the sky is blue", settle=0.3)
            names = [m.envelope.name for m in announced]
            assert names == ["conversationResponse", "startSpeaking"]
            assert announced[1].envelope.body["text"] == "the sky is blue"
            assert announced[1].envelope.body["optionalArgs"] == {"canBeInterrupted": True}
            session = await store.get(session_id)
            assert session.status is SessionStatus.CONNECTED
            assert session.dp_session_id == host.dp_session_id
        await asyncio.sleep(0.2)
        follower.cancel()

        session = await store.get(session_id)
        assert session.status is SessionStatus.ENDED
        speech = [e.data["speech_state"] for e in events if e.type == "speech"]
        assert speech[:2] == ["speaking", "idle"]
        assert speech.count("speaking") >= 3  # after each response and the unprompted speech
        assert events[0].type == "connected"
        assert events[-1].type == "ended"
        user_turns = [t.text for t in session.transcript if t.role == "user"]
        assert user_turns == ["hello there", "announce the sky is blue"]


@pytest.mark.anyio
async def test_refused_handshake_is_http_403_with_a_reason() -> None:
    """A bad token never gets in: the handshake answers 403 with a JSON reason."""
    with ThreadedServer(make_app()) as server:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(f"{server.ws_url}?access_token=not.a.token"):
                pass
        assert refused.value.response.status_code == 403
        assert b'"error":"malformed"' in refused.value.response.body


@pytest.mark.anyio
async def test_graceful_shutdown_closes_sockets_with_going_away_and_keeps_state() -> None:
    """On shutdown live sockets close with 1001/1012 and the session state stays in the store."""
    app = make_app()
    server = ThreadedServer(app)
    with server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
            await host.start(settle=0.1)
            await host.say("my name is Ada", settle=0.1)
            await asyncio.to_thread(server.stop)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(host.connection.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code in (1001, 1012)
    session = app.state.store._sessions[issued["session_id"]]
    assert session.status is SessionStatus.ENDED
    assert session.variables == {"name": "Ada"}
    assert [t.text for t in session.transcript if t.role == "user"] == ["my name is Ada"]


def simulate_command(*args: str) -> subprocess.CompletedProcess[str]:
    """``orchestrator simulate ARGS`` in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "simulate", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def simulate_script(
    tmp_path: Path, script: str, *, settle: str
) -> subprocess.CompletedProcess[str]:
    """``orchestrator simulate --script`` playing ``script`` against a fresh server."""
    path = tmp_path / "script.txt"
    path.write_text(script)
    with ThreadedServer(make_app()) as server:
        return simulate_command("--url", server.base_url, "--script", str(path), "--settle", settle)


def test_simulate_command_runs_a_script(tmp_path: Path) -> None:
    """`orchestrator simulate --script` plays the host from a file and prints the replies."""
    script = "# a comment\nhello\nshow me a card\nwhy is the sky blue?\n"
    result = simulate_script(tmp_path, script, settle="0.2")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("connected to ws://127.0.0.1:")
    assert "you: hello" in lines
    assert "DP: You said: hello" in lines
    assert "    [card about: markdown]" in lines
    assert "    [fallback]" in lines


def test_simulate_command_reports_a_refusal(tmp_path: Path) -> None:
    """A refused handshake prints the server's reason on stderr and exits 1."""
    with ThreadedServer(make_app()) as server:
        result = simulate_command(
            "--token", "x.y.z", "--control-url", server.ws_url, "--script", "/dev/null"
        )
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: the control socket at {server.ws_url} refused: HTTP 403"
    )
    assert '"error":"malformed"' in result.stderr


def test_simulate_command_reports_a_bad_script_line(tmp_path: Path) -> None:
    """A `/sleep` without a number in a script is one error line and exit 1, no traceback."""
    result = simulate_script(tmp_path, "/sleep soon\n", settle="0.1")
    assert result.returncode == 1
    assert result.stderr == "error: script line '/sleep soon': use /sleep SECONDS\n"


@pytest.mark.anyio
async def test_the_simulator_appends_the_token_to_a_control_url_with_a_query() -> None:
    """A --control-url that already has a query gets '&access_token=', not a second '?'."""
    app = make_app()
    with ThreadedServer(app) as server:
        issued = await fetch_token(server)
        async with HostSimulator.connect(f"{server.ws_url}?probe=1", issued["jwt"]) as host:
            reply = await host.say("hi", settle=0.1)
    assert reply[0].describe() == "DP: You said: hi"


@pytest.mark.anyio
async def test_a_connect_storm_paced_one_handshake_per_pass_gets_every_host_in() -> None:
    """CONTROL_HANDSHAKES_PER_PASS=1 with 60 hosts connecting at once: each is
    accepted in turn and answered, a live host keeps conversing meanwhile, and
    no handshake is left waiting."""
    app = make_app(control_handshakes_per_pass=1, rate_limit="1000/minute")
    with ThreadedServer(app) as server:
        tokens = [await fetch_token(server) for _ in range(61)]
        live, *storm = tokens
        async with websockets.connect(f"{server.ws_url}?access_token={live['jwt']}") as host:

            async def connect_and_converse(issued: dict[str, Any]) -> str:
                url = f"{server.ws_url}?access_token={issued['jwt']}"
                async with websockets.connect(url) as socket:
                    await socket.send(say(f"hello {issued['session_id']}"))
                    return await reply_text(socket)

            crowd = asyncio.gather(*(connect_and_converse(issued) for issued in storm))
            await host.send(say("keep going"))
            assert await reply_text(host) == "You said: keep going"
            answers = await asyncio.wait_for(crowd, 30)
    assert answers == [f"You said: hello {issued['session_id']}" for issued in storm]
    assert app.state.control_admission.waiting == 0


async def reply_text(socket: Any) -> str:
    """The output text of the next ``conversationResponse`` on ``socket``."""
    while True:
        message = json.loads(await asyncio.wait_for(socket.recv(), 10))
        if message["name"] == "conversationResponse":
            text: str = message["body"]["output"]["text"]
            return text


@pytest.mark.anyio
async def test_every_control_handshake_goes_through_the_admission(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered: list[int] = []
    real_enter = HandshakeAdmission.enter

    async def counted(self: HandshakeAdmission) -> None:
        entered.append(self.per_pass)
        await real_enter(self)

    monkeypatch.setattr(HandshakeAdmission, "enter", counted)
    app = make_app(control_handshakes_per_pass=7)
    with ThreadedServer(app) as server:
        issued = await fetch_token(server)
        async with websockets.connect(f"{server.ws_url}?access_token={issued['jwt']}") as host:
            await host.send(say("hello"))
            assert await reply_text(host) == "You said: hello"
    assert entered == [7]
