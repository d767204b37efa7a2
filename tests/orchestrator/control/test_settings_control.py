"""Settings for the control socket and the conversation handler."""

from __future__ import annotations

import pytest

from orchestrator.config import DEFAULT_HANDLER, Settings, SettingsError
from tests.conftest import random_secret

PRODUCTION = {
    "ORCHESTRATOR_ENV": "production",
    "JWT_PUBLIC_KEY": "key",
    "SESSION_SERVER": "dh.example.com",
    "PUBLIC_URL": "https://orch.example.com",
}


def test_control_defaults() -> None:
    """With no configuration: the built-in handler, 10 s timeout, 64 KiB frames, 50 frames/s."""
    settings = Settings.from_env({}, env_file=None)
    assert settings.conversation_handler == DEFAULT_HANDLER
    assert settings.handler_timeout_seconds == 10.0
    assert settings.control_max_frame_bytes == 64 * 1024
    assert settings.control_max_frames_per_second == 50.0
    assert settings.allow_unauthenticated_control is False


def test_control_settings_are_read_from_the_environment() -> None:
    """Each control variable is honoured."""
    settings = Settings.from_env(
        {
            "CONVERSATION_HANDLER": "my.module:handler",
            "HANDLER_TIMEOUT_SECONDS": "2.5",
            "HANDLER_APOLOGY": "Sorry!",
            "ALLOW_UNAUTHENTICATED_CONTROL": "true",
            "CONTROL_MAX_FRAME_BYTES": "4096",
            "CONTROL_MAX_FRAMES_PER_SECOND": "20",
        },
        env_file=None,
    )
    assert settings.conversation_handler == "my.module:handler"
    assert settings.handler_timeout_seconds == 2.5
    assert settings.handler_apology == "Sorry!"
    assert settings.allow_unauthenticated_control is True
    assert settings.control_max_frame_bytes == 4096
    assert settings.control_max_frames_per_second == 20


def test_unauthenticated_control_is_refused_in_production() -> None:
    """ALLOW_UNAUTHENTICATED_CONTROL never applies in production: start-up refuses it."""
    env = {**PRODUCTION, "JWT_PRIVATE_KEY": random_secret(), "ALLOW_UNAUTHENTICATED_CONTROL": "1"}
    with pytest.raises(SettingsError, match="ALLOW_UNAUTHENTICATED_CONTROL"):
        Settings.from_env(env, env_file=None)


@pytest.mark.parametrize(
    ("name", "value"),
    [("HANDLER_TIMEOUT_SECONDS", "0"), ("HANDLER_TIMEOUT_SECONDS", "soon"),
     ("CONTROL_MAX_FRAME_BYTES", "10")],
)  # fmt: skip
def test_bad_control_values_are_refused(name: str, value: str) -> None:
    """Nonsense limits are a start-up error naming the variable."""
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value}, env_file=None)


def test_transcript_turns_bounds_the_live_transcript() -> None:
    """TRANSCRIPT_TURNS caps how many lines a live session's transcript keeps."""
    from starlette.testclient import TestClient

    from tests.orchestrator.control_helpers import make_app, next_named, say

    with TestClient(make_app(transcript_turns=3)) as client:
        issued = client.get("/api/jwt").json()
        with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
            for index in range(3):
                ws.send_text(say(f"line {index}"))
                next_named(ws, "conversationResponse")
        session = client.app.state.store._sessions[issued["session_id"]]  # type: ignore[attr-defined]
        assert [t.text for t in session.transcript] == [
            "You said: line 1",
            "line 2",
            "You said: line 2",
        ]
    assert Settings.from_env({"TRANSCRIPT_TURNS": "50"}, env_file=None).transcript_turns == 50
    with pytest.raises(SettingsError, match="TRANSCRIPT_TURNS"):
        Settings.from_env({"TRANSCRIPT_TURNS": "0"}, env_file=None)


def test_transcript_max_bytes_bounds_the_live_session_and_frames_cannot_grow_it() -> None:
    """TRANSCRIPT_MAX_BYTES bounds a live transcript in bytes (oldest entries drop), and
    every string a frame puts into the session is kept cut short: entries, the last
    recognised transcript, state strings, event names. What the DP gets is whole."""
    from starlette.testclient import TestClient

    from orchestrator.sessions.model import MAX_EVENT_NAME_CHARS, MAX_STATE_CHARS, MAX_TURN_CHARS
    from tests.orchestrator.control_helpers import envelope, make_app, next_named, output_text, say

    long = "z" * 20_000
    state = {"session": {"sessionId": long, "state": long, "userInfo": long}}
    recognized = {"results": [{"final": True, "alternatives": [{"transcript": long}]}]}
    with TestClient(make_app(transcript_max_bytes=16 * 1024)) as client:
        issued = client.get("/api/jwt").json()
        with client.websocket_connect(f"/ws?access_token={issued['jwt']}") as ws:
            ws.send_text(envelope("state", state))
            ws.send_text(envelope("recognizeResults", recognized))
            ws.send_text(envelope(long, {}))
            for _ in range(3):
                ws.send_text(say(long))
                assert output_text(next_named(ws, "conversationResponse")) == f"You said: {long}"
        session = client.app.state.store._sessions[issued["session_id"]]  # type: ignore[attr-defined]
    assert session.transcript_bytes <= 16 * 1024
    assert [(t.role, len(t.text), t.original_length) for t in session.transcript] == [
        ("dp", MAX_TURN_CHARS, 20_010),
        ("user", MAX_TURN_CHARS, 20_000),
        ("dp", MAX_TURN_CHARS, 20_010),
    ]  # three 4 KiB entries fit in 16 KiB, the oldest three did not
    assert session.last_user_transcript == long[:MAX_TURN_CHARS]
    kept = (session.dp_session_id, session.dp_session_state, session.user_info)
    assert kept == (long[:MAX_STATE_CHARS],) * 3
    assert [event["name"] for event in session.events] == [long[:MAX_EVENT_NAME_CHARS]]
    assert (
        Settings.from_env({"TRANSCRIPT_MAX_BYTES": "65536"}, env_file=None).transcript_max_bytes
        == 65536
    )
    for bad in ("16383", "1e9", "many"):
        with pytest.raises(SettingsError, match="TRANSCRIPT_MAX_BYTES"):
            Settings.from_env({"TRANSCRIPT_MAX_BYTES": bad}, env_file=None)


def test_send_and_transaction_timeouts_are_configurable() -> None:
    """CONTROL_SEND_TIMEOUT_SECONDS and TRANSACTION_TIMEOUT_SECONDS are read and must be > 0."""
    settings = Settings.from_env(
        {"CONTROL_SEND_TIMEOUT_SECONDS": "3", "TRANSACTION_TIMEOUT_SECONDS": "4.5"}, env_file=None
    )
    assert (settings.control_send_timeout_seconds, settings.transaction_timeout_seconds) == (3, 4.5)
    with pytest.raises(SettingsError, match="CONTROL_SEND_TIMEOUT_SECONDS"):
        Settings.from_env({"CONTROL_SEND_TIMEOUT_SECONDS": "0"}, env_file=None)
