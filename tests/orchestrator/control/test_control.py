"""The control socket in-process: who gets in, what a bad frame does, and how a
conversation runs (the same code the real server runs)."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from orchestrator.control.options import CLOSE_POLICY, CLOSE_REPLACED, CLOSE_TOO_BIG
from orchestrator.handlers.deadline import TurnDeadline
from orchestrator.sessions.model import SessionStatus
from tests.conftest import random_secret
from tests.orchestrator.control_helpers import (
    KEY_NAME,
    envelope,
    initial_state,
    make_app,
    make_settings,
    next_named,
    output_text,
    say,
)
from tokens import Keyring, SigningKey, SoulMachinesPolicy, SoulMachinesProfile, TokenCodec


@pytest.fixture
def client() -> Any:
    with TestClient(make_app()) as test_client:
        yield test_client


def issue(client: TestClient, claims: dict[str, Any] | None = None) -> dict[str, Any]:
    if claims is None:
        response = client.get("/api/jwt")
    else:
        response = client.post("/auth/authorize", json={"claims": claims})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refusal(client: TestClient, url: str, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(WebSocketDenialResponse) as denied, client.websocket_connect(url, **kwargs):
        pass
    assert denied.value.status_code == 403
    body: dict[str, Any] = denied.value.json()
    return body


# --- who gets in ---------------------------------------------------------------


def test_a_token_from_api_jwt_opens_the_socket_and_binds_the_dp_session(client: TestClient) -> None:
    """The issued token gets in; the first state binds sessionId and userInfo to the session."""
    issued = issue(client, {"user": "u-1"})
    with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
        ws.send_text(initial_state("dp-42"))
        ws.send_text(say("", init=True))
        welcome = next_named(ws, "conversationResponse")
        assert "Hello" in output_text(welcome)
        session = client.app.state.store._sessions[issued["session_id"]]  # type: ignore[attr-defined]
        assert session.status is SessionStatus.CONNECTED
        assert session.dp_session_id == "dp-42"
        assert session.user_info == "ui"
        assert session.key_name == KEY_NAME
        assert session.claims == {"user": "u-1", "client_claims": ["user"]}  # the mark
    assert session.status is SessionStatus.ENDED


def test_the_root_path_serves_the_control_socket_too(client: TestClient) -> None:
    """The vendor's ORCHESTRATION_SERVER=host gives wss://host/, so '/' also works."""
    issued = issue(client)
    with client.websocket_connect(f"/?access_token={issued['jwt']}") as ws:
        ws.send_text(say("hi"))
        assert output_text(next_named(ws, "conversationResponse")) == "You said: hi"


def test_a_bearer_header_is_accepted(client: TestClient) -> None:
    """The token may come as Authorization: Bearer (server-to-server hosts)."""
    issued = issue(client)
    with client.websocket_connect(
        "/ws", headers={"Authorization": f"Bearer {issued['jwt']}"}
    ) as ws:
        ws.send_text(say("hi"))
        assert output_text(next_named(ws, "conversationResponse")) == "You said: hi"


def test_no_token_is_refused(client: TestClient) -> None:
    """Nobody gets in unauthenticated."""
    assert refusal(client, "/ws")["error"] == "no_token"


def test_an_expired_token_is_refused(client: TestClient) -> None:
    """A token past exp (beyond the leeway) is refused as expired."""
    settings = client.app.state.settings  # type: ignore[attr-defined]
    codec = TokenCodec(settings.keyring, clock=lambda: 1_000_000.0)
    old = SoulMachinesProfile(codec, settings.sm_policy()).mint(control_url="ws://x/ws")
    assert refusal(client, f"/ws?access_token={old.jwt}")["error"] == "expired"


def test_a_token_signed_with_another_key_is_refused(client: TestClient) -> None:
    """Same key name, different secret: the signature does not match."""
    foreign = Keyring(SigningKey.from_text(KEY_NAME, random_secret()))
    token = SoulMachinesProfile(TokenCodec(foreign), SoulMachinesPolicy("dh.example.com")).mint(
        control_url="ws://x/ws"
    )
    assert refusal(client, f"/ws?access_token={token.jwt}")["error"] == "bad_signature"


def test_a_token_of_another_type_is_refused(client: TestClient) -> None:
    """A correctly signed token of another profile (typ) does not open the socket."""
    settings = client.app.state.settings  # type: ignore[attr-defined]
    token = TokenCodec(settings.keyring).encode(
        {"iss": KEY_NAME, "iat": 1, "exp": 2**40, "session_id": "x"}, "ccai+jwt"
    )
    assert refusal(client, f"/ws?access_token={token}")["error"] == "wrong_type"


def test_a_tampered_token_is_refused(client: TestClient) -> None:
    """Changing the claims (here, the session id) breaks the signature."""
    issued = issue(client)
    header, payload, signature = issued["jwt"].split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["session_id"] = "someone-else"
    forged = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    token = f"{header}.{forged}.{signature}"
    assert refusal(client, f"/ws?access_token={token}")["error"] == "bad_signature"


def test_a_token_for_another_session_is_refused() -> None:
    """With the affinity cookie, a token whose session differs from the cookie's is refused."""
    with TestClient(make_app(control_cookie_name="sm_session")) as client:
        first, second = issue(client), issue(client)
        body = refusal(
            client,
            f"/ws?access_token={first['jwt']}",
            headers={"Cookie": f"sm_session={second['session_id']}"},
        )
        assert body["error"] == "wrong_session"


def test_the_affinity_cookie_alone_opens_an_issued_session() -> None:
    """The host may present only the sm-control-cookie-header cookie of an issued session."""
    with TestClient(make_app(control_cookie_name="sm_session")) as client:
        issued = issue(client)
        claims = jwt.decode(issued["jwt"], options={"verify_signature": False})
        assert claims["sm-control-cookie-header"] == f"sm_session={issued['session_id']}"
        with client.websocket_connect(
            "/ws", headers={"Cookie": f"sm_session={issued['session_id']}"}
        ) as ws:
            ws.send_text(say("hi"))
            assert output_text(next_named(ws, "conversationResponse")) == "You said: hi"
        body = refusal(client, "/ws", headers={"Cookie": "sm_session=never-issued"})
        assert body["error"] == "unknown_session"


def test_unauthenticated_local_connections_only_when_allowed() -> None:
    """ALLOW_UNAUTHENTICATED_CONTROL lets a loopback client in without a token (development)."""
    app = make_app(allow_unauthenticated_control=True)
    with TestClient(app, client=("127.0.0.1", 5)) as c, c.websocket_connect("/ws") as ws:
        ws.send_text(say("hi"))
        assert output_text(next_named(ws, "conversationResponse")) == "You said: hi"
    with TestClient(make_app(allow_unauthenticated_control=True), client=("203.0.113.9", 5)) as c:
        assert refusal(c, "/ws")["error"] == "no_token"


def test_a_key_name_that_does_not_match_the_token_closes_the_socket(client: TestClient) -> None:
    """The first state's meta.keyName must be the token's iss."""
    issued = issue(client)
    with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
        ws.send_text(initial_state(key_name="another-project"))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == CLOSE_POLICY


def test_the_newest_connection_for_a_session_wins(client: TestClient) -> None:
    """A reconnect with the same token replaces the old socket (closed with 4001)."""
    issued = issue(client)
    url = f"/ws?access_token={issued['jwt']}"
    with client.websocket_connect(url) as old:
        old.send_text(say("before"))
        next_named(old, "conversationResponse")
        with client.websocket_connect(url) as new:
            with pytest.raises(WebSocketDisconnect) as closed:
                old.receive_json()
            assert closed.value.code == CLOSE_REPLACED
            new.send_text(say("after"))
            assert output_text(next_named(new, "conversationResponse")) == "You said: after"
            session = client.app.state.store._sessions[issued["session_id"]]  # type: ignore[attr-defined]
            assert [t.text for t in session.transcript if t.role == "user"] == ["before", "after"]


# --- bad frames never end the DP session ----------------------------------------------


BAD_FRAMES: list[tuple[str, str | bytes]] = [
    ("invalid json", "{not json"),
    ("not an object", "[1,2,3]"),
    ("binary frame", b"\x00\x01binary"),
    ("oversize frame", envelope("state", {"pad": "x" * 70_000})),
    ("wrong field types", json.dumps({"kind": "event", "name": 7, "body": []})),
    ("bad request body", envelope("conversationRequest", {"input": {"text": 5}})),
    ("unknown name", envelope("somethingNew", {"x": 1})),
    ("foreign response", envelope("startSpeaking", {}, kind="response", transaction=99, status=0)),
]


@pytest.mark.parametrize(("label", "frame"), BAD_FRAMES, ids=[label for label, _ in BAD_FRAMES])
def test_a_bad_frame_keeps_the_socket_open_and_the_session_intact(
    client: TestClient, label: str, frame: str | bytes
) -> None:
    """After any bad frame the conversation continues with its state."""
    issued = issue(client)
    with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
        ws.send_text(initial_state("dp-7"))
        ws.send_text(say("my name is Ada"))
        next_named(ws, "conversationResponse")
        if isinstance(frame, bytes):
            ws.send_bytes(frame)
        else:
            ws.send_text(frame)
        ws.send_text(say("hello"))
        reply = next_named(ws, "conversationResponse")
        assert output_text(reply) == "Ada, you said: hello"
        session = client.app.state.store._sessions[issued["session_id"]]  # type: ignore[attr-defined]
        assert session.dp_session_id == "dp-7"
        assert session.variables == {"name": "Ada"}
        expected_bad = 0 if label in ("unknown name", "foreign response") else 1
        assert session.bad_frames == expected_bad


def test_repeated_oversize_frames_close_with_1009() -> None:
    """Abuse by oversize frames closes the socket with 'message too big'."""
    with TestClient(make_app(control_max_frame_bytes=1024)) as client:
        issued = issue(client)
        with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
            for _ in range(3):
                ws.send_text(envelope("state", {"pad": "x" * 2000}))
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == CLOSE_TOO_BIG


def test_a_flood_past_the_rate_limit_closes_with_1008() -> None:
    """More frames than the limit allows (after the burst) closes with policy violation."""
    with TestClient(make_app(control_max_frames_per_second=5)) as client:
        issued = issue(client)
        with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
            for _ in range(60):
                ws.send_text(envelope("state", {"recognizing": False}))
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == CLOSE_POLICY
            assert closed.value.reason == "message rate limit exceeded"


# --- the conversation ----------------------------------------------------------------


def test_speech_state_and_recognition_are_tracked(client: TestClient) -> None:
    """state events update speech state and recognizing; recognizeResults the transcript."""
    issued = issue(client)
    with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
        ws.send_text(initial_state())
        ws.send_text(envelope("state", {"persona": {"1": {"speechState": "speaking"}}}))
        ws.send_text(envelope("state", {"recognizing": True}))
        ws.send_text(
            envelope(
                "recognizeResults",
                {"status": 0, "results": [{"final": True, "alternatives": [{"transcript": "yo"}]}]},
            )
        )
        ws.send_text(say("sync"))
        next_named(ws, "conversationResponse")
        session = client.app.state.store._sessions[issued["session_id"]]  # type: ignore[attr-defined]
        assert session.speech_state == "speaking"
        assert session.recognizing is True
        assert session.last_user_transcript == "yo"


def test_the_handler_can_respond_several_times_speak_and_set_variables() -> None:
    """respond(), speak(), stop_speaking() and set_variables() all reach the wire."""
    handler = "tests.orchestrator.handlers_for_tests:chatty"
    with TestClient(make_app(conversation_handler=handler)) as client:
        issued = issue(client)
        with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
            ws.send_text(say("go"))
            frames = [ws.receive_json() for _ in range(4)]
            assert [f["name"] for f in frames] == [
                "conversationResponse",
                "startSpeaking",
                "stopSpeaking",
                "conversationResponse",
            ]
            assert output_text(frames[0]) == "one"
            assert frames[1]["body"] == {
                "personaId": 1,  # the type say() used
                "text": "two",
                "optionalArgs": {"canBeInterrupted": False},
            }
            assert frames[3]["body"]["variables"] == {"seen": "go", "extra": 1}
            transactions = [f["transaction"] for f in frames]
            assert len(set(transactions)) == 4
            assert all(t.startswith("orch-") for t in transactions)
            # The DP's responses to our requests are matched and cleared.
            for f in frames:
                ws.send_text(
                    envelope(f["name"], {}, kind="response", transaction=f["transaction"], status=0)
                )
            ws.send_text(say("again"))
            next_named(ws, "conversationResponse")


@pytest.mark.parametrize(
    ("handler", "overrides"),
    [
        ("tests.orchestrator.handlers_for_tests:explode", {}),
        ("tests.orchestrator.handlers_for_tests:dawdle", {"handler_timeout_seconds": 0.2}),
    ],
    ids=["raises", "times-out"],
)
def test_a_failing_handler_makes_the_dp_apologise_and_keeps_the_socket(
    handler: str, overrides: dict[str, Any]
) -> None:
    """A handler that raises or times out: the apology is said, the conversation goes on."""
    app = make_app(conversation_handler=handler, handler_apology="Oops, try again.", **overrides)
    with TestClient(app) as client:
        issued = issue(client)
        with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
            ws.send_text(say("", init=True))
            assert output_text(next_named(ws, "conversationResponse")) == "ready"
            for _ in range(2):
                ws.send_text(say("break"))
                assert output_text(next_named(ws, "conversationResponse")) == "Oops, try again."


def test_a_closed_socket_leaves_no_turn_timer_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The handler timeout's timer (one per connection) goes with the connection:
    nothing keeps a closed conversation alive until its last deadline."""
    made: list[TurnDeadline] = []
    real_init = TurnDeadline.__init__

    def init(self: TurnDeadline, seconds: float) -> None:
        real_init(self, seconds)
        made.append(self)

    monkeypatch.setattr(TurnDeadline, "__init__", init)
    app = make_app(handler_timeout_seconds=30)
    with TestClient(app) as client:
        issued = issue(client)
        with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
            ws.send_text(say("hello"))
            next_named(ws, "conversationResponse")
            assert [deadline.armed for deadline in made] == [True]
            timer = made[0]._timer  # the handle itself: stopped, not just forgotten
        assert [deadline.armed for deadline in made] == [False]
        assert timer is not None and timer.cancelled()


def test_an_unusable_handler_setting_fails_at_start_up() -> None:
    """CONVERSATION_HANDLER naming nothing callable is a start-up error, not a runtime one."""
    from orchestrator.app import create_app
    from orchestrator.handlers.loader import HandlerLoadError

    for spec in (
        "nocolon",
        "no.such.module:x",
        "tests.orchestrator.handlers_for_tests:not_callable",
    ):
        with pytest.raises(HandlerLoadError):
            create_app(make_settings(conversation_handler=spec))


def test_a_key_name_mismatch_is_not_recorded(client: TestClient) -> None:
    """The refused keyName never reaches the session record."""
    issued = issue(client)
    with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
        ws.send_text(initial_state(key_name="another-project"))
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()
    session = client.app.state.store._sessions[issued["session_id"]]  # type: ignore[attr-defined]
    assert session.key_name is None


def test_repeated_identical_state_events_do_not_resave_the_session(client: TestClient) -> None:
    """A state event that changes nothing costs no store write (the Redis hot path)."""
    issued = issue(client)
    store = client.app.state.store  # type: ignore[attr-defined]
    saves: list[str] = []
    original = store.save

    async def counting_save(session: Any) -> None:
        saves.append(session.id)
        await original(session)

    store.save = counting_save
    with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
        ws.send_text(initial_state())
        for _ in range(5):
            ws.send_text(envelope("state", {"persona": {"1": {"speechState": "idle"}}}))
        ws.send_text(envelope("state", {"persona": {"1": {"speechState": "speaking"}}}))
        ws.send_text(say("sync"))
        next_named(ws, "conversationResponse")
        # connect, the initial state, the speaking change (and the turn's own save,
        # which may land after its reply): never the five idle repeats
        assert len(saves) in (3, 4)


def test_a_handler_setting_a_non_json_variable_costs_one_turn_only() -> None:
    """A variable that is not JSON is refused in that turn (apology); later turns still answer."""
    handler = "tests.orchestrator.handlers_for_tests:bad_variable"
    with TestClient(make_app(conversation_handler=handler, handler_apology="Oops.")) as client:
        issued = issue(client)
        with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
            ws.send_text(say("break"))
            assert output_text(next_named(ws, "conversationResponse")) == "Oops."
            ws.send_text(say("again"))
            assert output_text(next_named(ws, "conversationResponse")) == "echo again"
        session = client.app.state.store._sessions[issued["session_id"]]  # type: ignore[attr-defined]
        assert "when" not in session.variables
