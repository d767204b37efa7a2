"""Logging: the redacting pipeline for our events and uvicorn's records, JSON or console."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from orchestrator.app import create_app
from orchestrator.logs import REDACTED, Redactor, configure_logging, level_check
from orchestrator.settings import Settings
from tests.conftest import random_secret
from tokens import Keyring, SigningKey, SoulMachinesPolicy, SoulMachinesProfile, TokenCodec

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def a_token(secret: str) -> str:
    keyring = Keyring(SigningKey.from_text("log-key", secret))
    policy = SoulMachinesPolicy(session_server="dh.soulmachines.cloud", control_url="ws://h/ws")
    return SoulMachinesProfile(TokenCodec(keyring), policy).mint().jwt


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put stdlib logging and structlog back as they were, whatever the test configured."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in UVICORN_LOGGERS
    }
    saved_structlog = structlog.get_config()
    yield
    root.handlers[:], root.level = saved_root[0], saved_root[1]
    for name, (handlers, propagate) in saved.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate
    structlog.reset_defaults()
    structlog.configure(**saved_structlog)


def configured(
    *, json_lines: bool, secrets: tuple[str, ...] = (), level: str = "info"
) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(json=json_lines, level=level, secrets=secrets, stream=stream)
    return stream


def access_log(path: str) -> None:
    """A record shaped exactly like uvicorn's access log line."""
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", "GET", path, "1.1", 200
    )


@pytest.mark.usefixtures("restore_logging")
def test_access_log_never_prints_the_access_token() -> None:
    """uvicorn's access line keeps the path but replaces the access_token value."""
    secret = random_secret()
    token = a_token(secret)
    stream = configured(json_lines=False, secrets=(secret,))
    access_log(f"/ws?session=abc&access_token={token}&x=1")
    output = stream.getvalue()
    assert token not in output
    assert "/ws?session=abc&access_token=[redacted]&x=1" in output


@pytest.mark.usefixtures("restore_logging")
def test_our_events_are_scrubbed_of_tokens_and_keys_in_any_field() -> None:
    """Tokens and configured secrets are removed from messages, fields and nested values."""
    secret = random_secret()
    token = a_token(secret)
    stream = configured(json_lines=True, secrets=(secret,))
    structlog.get_logger("test.scrub").warning(
        f"got {token}",
        header=f"Bearer {token}",
        nested={"list": [secret, f"key={secret}"], "ok": "kept"},
    )
    output = stream.getvalue()
    assert token not in output
    assert secret not in output
    record = json.loads(output)
    assert record["event"] == f"got {REDACTED}"
    assert record["header"] == f"Bearer {REDACTED}"
    assert record["nested"]["ok"] == "kept"


@pytest.mark.usefixtures("restore_logging")
def test_tracebacks_are_scrubbed_too() -> None:
    """A secret inside an exception message does not escape through the rendered traceback."""
    secret = random_secret()
    stream = configured(json_lines=True, secrets=(secret,))
    try:
        raise ValueError(f"bad key {secret}")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("failure")
    output = stream.getvalue()
    assert "ValueError: bad key [redacted]" in json.loads(output)["exception"]
    assert secret not in output


@pytest.mark.usefixtures("restore_logging")
def test_production_format_is_one_json_object_per_line() -> None:
    """JSON mode writes parseable lines with event, level, logger and timestamp."""
    stream = configured(json_lines=True)
    structlog.get_logger("test.json").info("hello", answer=42)
    access_log("/healthz")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "hello",
        '127.0.0.1:50000 - "GET /healthz HTTP/1.1" 200',
    ]
    assert lines[0]["answer"] == 42
    assert {"level", "logger", "timestamp"} <= set(lines[0])
    assert lines[1]["logger"] == "uvicorn.access"


@pytest.mark.usefixtures("restore_logging")
def test_development_format_is_readable_text() -> None:
    """Console mode writes human lines, not JSON, without colour codes on a non-terminal."""
    stream = configured(json_lines=False)
    structlog.get_logger("test.console").info("hello", answer=42)
    output = stream.getvalue()
    assert "hello" in output
    assert "answer=42" in output
    assert "\x1b[" not in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output)


@pytest.mark.usefixtures("restore_logging")
def test_level_filters_lower_records() -> None:
    """LOG_LEVEL=warning drops info records from both structlog and uvicorn."""
    stream = configured(json_lines=True, level="warning")
    structlog.get_logger("test.level").info("quiet")
    access_log("/healthz")
    structlog.get_logger("test.level").warning("loud")
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["loud"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/p?access_token=abc.def&y=1", "/p?access_token=[redacted]&y=1"),
        ("/p?TOKEN=abc", "/p?TOKEN=[redacted]"),
        ("/p?api_key=abc", "/p?api_key=[redacted]"),
        ("password=hunter2 next", "password=[redacted] next"),
        ("Authorization: Bearer abcdefgh12345", "Authorization: Bearer [redacted]"),
        ("/p?page=2&sort=name", "/p?page=2&sort=name"),
        ("monkey=banana", "monkey=banana"),
    ],
)
def test_redactor_rules(text: str, expected: str) -> None:
    """Sensitive parameters and bearer credentials are replaced; ordinary text is kept."""
    assert Redactor()(text) == expected


def test_redactor_ignores_very_short_secrets() -> None:
    """Secrets under 8 characters are not used (they would redact ordinary words)."""
    assert Redactor(["the"])("the cat") == "the cat"


def test_redactor_scrubs_containers_preserving_types() -> None:
    """Lists, tuples and dicts are scrubbed element-wise; other values pass unchanged."""
    secret = random_secret()
    scrubbed: Any = Redactor([secret]).scrub({"a": [secret], "b": (secret, 3), "c": None})
    assert scrubbed == {"a": [REDACTED], "b": (REDACTED, 3), "c": None}


def test_app_events_carry_no_token_or_key(caplog: pytest.LogCaptureFixture) -> None:
    """In-process, the app's own log events (start, token issued) name sessions, never secrets."""
    caplog.set_level(logging.DEBUG, logger="orchestrator.app")  # "token issued" is a debug line
    secret = random_secret()
    settings = Settings.from_env(
        environ={"JWT_PUBLIC_KEY": "log-key", "JWT_PRIVATE_KEY": secret}, env_file=None
    )
    with capture_logs() as events, TestClient(create_app(settings)) as client:
        body = client.get("/api/jwt").json()
        client.post("/auth/authorize", headers={"Authorization": f"Bearer {body['jwt']}"})
        client.get(f"/healthz?access_token={body['jwt']}")
    assert any(
        e["event"] == "token issued" and e["session_id"] == body["session_id"] for e in events
    )
    assert any(e["event"] == "orchestrator started" for e in events)
    text = repr(events)
    assert body["jwt"] not in text
    assert secret not in text


@pytest.mark.usefixtures("restore_logging")
def test_level_check_follows_the_configured_level_and_later_changes() -> None:
    """level_check answers as configure_logging's filter does, so hot paths can skip a
    call, and a later level change is seen by a check made before it."""
    configured(json_lines=True, level="info")
    enabled_for = level_check("orchestrator.test")
    assert enabled_for(logging.INFO)
    assert not enabled_for(logging.DEBUG)
    configured(json_lines=True, level="debug")
    assert enabled_for(logging.DEBUG)


@pytest.mark.usefixtures("restore_logging")
def test_issued_tokens_are_logged_at_debug_only() -> None:
    """At info the access log covers token requests; LOG_LEVEL=debug adds each session id."""
    for level in ("info", "debug"):
        stream = configured(json_lines=True, level=level)
        with TestClient(create_app(Settings())) as client:
            session_id = client.get("/api/jwt").json()["session_id"]
        events = [json.loads(line) for line in stream.getvalue().splitlines()]
        issued = [e for e in events if e["event"] == "token issued"]
        assert [e["session_id"] for e in issued] == ([session_id] if level == "debug" else [])
