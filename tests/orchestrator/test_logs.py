"""Logging: the redacting pipeline for our events and uvicorn's records, JSON or console."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import structlog
import websockets.exceptions
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from structlog.testing import capture_logs
from websockets.sync.client import connect

from orchestrator.app import create_app
from orchestrator.config import Settings
from orchestrator.handlers.signing import SIGNATURE_HEADER, verify_signature
from orchestrator.logs import (
    FIELD_LIMIT,
    MESSAGE_LIMIT,
    REDACTED,
    Redactor,
    configure_logging,
    level_check,
)
from orchestrator.server.heads import HEAD_LINE_BYTES
from tests.conftest import random_secret
from tests.live_server import REPO_ROOT, LiveServer
from tests.uvicorn_thread import ThreadedServer
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
def test_access_log_keeps_the_path_but_never_the_query() -> None:
    """uvicorn's access line keeps the path and status; its query, however encoded, is dropped."""
    secret = random_secret()
    token = a_token(secret)
    stream = configured(json_lines=False, secrets=(secret,))
    access_log(f"/ws?session=abc&access%5Ftoken={token.replace('.', '%2E')}&x=1")
    output = stream.getvalue()
    assert token.split(".")[2] not in output
    assert '"GET /ws?[redacted] HTTP/1.1" 200' in output


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
    caplog.set_level(logging.DEBUG, logger="orchestrator")  # "token issued" is a debug line
    secret = random_secret()
    settings = Settings.from_env(
        environ={"JWT_PUBLIC_KEY": "log-key", "JWT_PRIVATE_KEY": secret, "ARCHIVE_URL": "none"},
        env_file=None,
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


ADVERSARIAL = ["eyJ", "eyJa.", "eyJaaaa.eyJ", "token=", "token=token", "bearer ", "Bearer\t",
               "a://", "a://@", "ab:", "://?&="]  # fmt: skip


@pytest.mark.parametrize("unit", ADVERSARIAL)
def test_redactor_is_linear_on_adversarial_100_kb_input(unit: str) -> None:
    """100 KB built to make the patterns backtrack (eyJeyJ..., token=token=..., bearer
    bearer ...) redacts in well under a second; the old JWT pattern took 6.5 s."""
    text = "eyJ= bearer :// " + unit * (100_000 // len(unit))
    redactor = Redactor()
    started = time.perf_counter()
    redactor(text)
    redactor(text + "x")
    redactor.bounded(text)
    assert time.perf_counter() - started < 1.0


def test_a_jwt_inside_a_long_run_is_still_redacted() -> None:
    """Matching runs of token characters, not every "eyJ", still finds a glued-on token."""
    token = a_token(random_secret())
    assert Redactor()(f"x{token}y and eyJnot.ajwt") == f"{REDACTED} and eyJnot.ajwt"


def test_truncation_never_leaves_part_of_a_token_or_secret() -> None:
    """Whatever the limit, the kept prefix holds no piece of a token's payload or signature,
    of a bearer credential, of a sensitive parameter's value or of a configured secret."""
    secret = random_secret()
    token = a_token(secret)
    _, payload, signature = token.split(".")
    credential = random_secret()
    text = (
        f"a {token} b Bearer {credential} c x{token}&key={secret}"
        f" d {secret} e access_token={credential}"
    )
    redactor = Redactor([secret])
    pieces = [
        s[i : i + 6] for s in (payload, signature, credential, secret) for i in range(0, len(s) - 5)
    ]
    for limit in range(1, len(text)):
        kept, marker, rest = redactor.bounded(text, limit).partition("…[+")
        assert marker and rest.endswith(" chars]")
        assert len(kept) <= limit + len(REDACTED) * 6
        assert not [piece for piece in pieces if piece in kept], limit


@pytest.mark.usefixtures("restore_logging")
def test_every_field_and_argument_is_bounded_with_a_marker() -> None:
    """Long client strings in our fields (and dict keys) and in uvicorn's arguments are cut
    with a visible marker; the access line keeps its status."""
    stream = configured(json_lines=True)
    name = "eyJ" * 22_000
    structlog.get_logger("test.bound").info("unknown message kept", name=name, body={name: name})
    access_log("/" + "a" * 65_000 + "?q=" + "eyJ" * 20_000)
    ours, access = (json.loads(line) for line in stream.getvalue().splitlines())
    assert ours["name"] == f"…[+{len(name)} chars]"
    assert ours["body"] == {ours["name"]: ours["name"]}
    assert len(access["event"]) < FIELD_LIMIT + 100
    # The path is one run of token characters: all of it goes rather than a piece.
    assert access["event"].endswith(f'"GET …[+{65_001 + len("?[redacted]")} chars] HTTP/1.1" 200')
    structlog.get_logger("test.bound").info("word " * 10_000)
    assert len(json.loads(stream.getvalue().splitlines()[-1])["event"]) < MESSAGE_LIMIT + 100


@pytest.mark.usefixtures("restore_logging")
def test_websocket_debug_lines_hide_the_query_and_credential_headers() -> None:
    """websockets' handshake lines at debug (request line, headers) name no credential."""
    stream = configured(json_lines=True, level="debug")
    error = logging.getLogger("uvicorn.error")
    error.debug("< %s %s %s", "GET", "/ws?access%5Ftoken=%65yJabcd%2Eabcd%2Esignature", "HTTP/1.1")
    for header in ("Authorization", "cookie", "Proxy-Authorization"):
        error.debug("< %s: %s", header, "Basic c2lnbmF0dXJl")
    error.debug("< %s: %s", "Host", "example.com")
    output = stream.getvalue()
    assert "signature" not in output
    assert "c2lnbmF0dXJl" not in output
    assert "< GET /ws?[redacted] HTTP/1.1" in output
    assert "< Host: example.com" in output


def _key_env(secret: str) -> dict[str, str]:
    return {"JWT_PUBLIC_KEY": "log-key", "JWT_PRIVATE_KEY": secret}


@pytest.mark.server
def test_a_huge_eyj_query_does_not_stall_the_server() -> None:
    """Anonymous ``/healthz?q=eyJeyJ...`` (and ``/eyJeyJ...``) requests in flight do not
    hold up another request (65 KB ones stalled the event loop ~4 s each), and the lines
    they leave are bounded. The longest request line that reaches the app and its log
    is just under the server's 16 KiB bound (``server/heads``)."""
    attack = "eyJ" * ((HEAD_LINE_BYTES - 64) // 3)
    with LiveServer(_key_env(random_secret())) as live:
        done: list[int] = []
        stop = threading.Event()

        def attacker(path: str) -> None:
            with httpx.Client(base_url=live.base_url, timeout=60) as client:
                while not stop.is_set():
                    done.append(client.get(path).status_code)

        threads = [
            threading.Thread(target=attacker, args=(path,))
            for path in (f"/healthz?q={attack}", f"/healthz?q={attack}", f"/{attack}")
        ]
        for thread in threads:
            thread.start()
        slowest = 0.0
        try:
            with httpx.Client(base_url=live.base_url, timeout=60) as client:
                deadline = time.monotonic() + 3
                while time.monotonic() < deadline or len(done) < 6:
                    started = time.monotonic()
                    assert client.get("/healthz").status_code == 200
                    slowest = max(slowest, time.monotonic() - started)
                    time.sleep(0.05)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        log = live.log_text
    assert slowest < 1.0
    assert set(done) == {200, 404}
    assert "/healthz?[redacted]" in log
    assert max(len(line) for line in log.splitlines()) < FIELD_LIMIT + 200


@pytest.mark.server
def test_a_percent_encoded_token_is_accepted_but_never_logged() -> None:
    """``/ws?access%5Ftoken=%65yJ...`` (escaped name, ``e`` and dots) is a token Starlette
    unescapes and accepts; neither it, its signature nor its encoded form reaches the log,
    at debug level too, nor does a Bearer header on the handshake."""
    secret = random_secret()
    with LiveServer({**_key_env(secret), "LOG_LEVEL": "debug"}) as live:
        tokens = [httpx.get(live.base_url + "/api/jwt").json()["jwt"] for _ in range(2)]
        encoded = "%65" + tokens[0][1:].replace(".", "%2E")
        with connect(f"{live.ws_url}?ACCESS_TOKEN=x&access%5Ftoken={encoded}", open_timeout=5):
            pass  # accepted: the escaped token is a valid one
        with connect(
            f"{live.ws_url}?session=1",
            additional_headers={"Authorization": f"Bearer {tokens[1]}"},
            open_timeout=5,
        ):
            pass
        double = quote(encoded)  # %2565yJ...%252E...: not a token once unescaped, still logged
        with pytest.raises(websockets.exceptions.InvalidStatus):
            connect(f"{live.ws_url}?access_token={double}+", open_timeout=5)
    log = live.log_text
    for token in tokens:
        for part in token.split(".")[1:]:
            assert part not in log
            assert part[:8] not in log
    assert secret not in log
    # The handshakes were logged: this test cannot pass by logging nothing.
    assert '"WebSocket /ws?[redacted]" [accepted]' in log
    assert "< GET /ws?[redacted] HTTP/1.1" in log


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "POST https://al:pw@h:1/p?code=abc&sig=x%2By&flag#t=1 200",
            "POST https://R@h:1/p?code=R&sig=R&R#t=R 200".replace("R", REDACTED),
        ),
        ("redis://:pw@redis:6379/0 up", f"redis://{REDACTED}@redis:6379/0 up"),
        ("see https://example.com/docs.", "see https://example.com/docs."),
    ],
)
def test_any_url_loses_its_userinfo_and_query_values(text: str, expected: str) -> None:
    """Whatever URL a library or driver puts in a line: no userinfo, no query value."""
    assert Redactor()(text) == expected


def test_a_cut_never_keeps_part_of_a_url_userinfo() -> None:
    """Truncation inside ``https://user:password@`` keeps none of the password."""
    text = "at https://someone:Pa%21ssw%25rd@host/x"
    for limit in range(1, len(text)):
        kept = Redactor().bounded(text, limit).partition("…[+")[0]
        assert "Pa" not in kept and "ssw" not in kept, limit


def secret_url_backend(secret: str, heard: list[str]) -> Starlette:
    """A webhook backend answering on any path: echoes turns, 500 to ``crash``."""

    async def answer(request: Request) -> Response:
        raw = await request.body()
        verify_signature(secret, request.headers.get(SIGNATURE_HEADER), raw)
        heard.append(f"{request.url.path}?{request.url.query} {request.headers['authorization']}")
        payload = json.loads(raw)
        if request.headers.get("Orchestrator-Event") != "turn":
            return Response(status_code=204)
        if payload.get("text") == "crash":
            return Response(status_code=500)
        return JSONResponse({"text": f"heard {payload['text'] or 'nothing'}"})

    return Starlette(routes=[Route("/{rest:path}", answer, methods=["POST"])])


@pytest.mark.server
def test_a_webhook_url_with_credentials_leaves_none_of_them_in_the_log(tmp_path: Path) -> None:
    """WEBHOOK_URL with ``user:password@``, a secret path segment and ``?code=&sig=``:
    a whole session, a failed turn included, and not one of them reaches the log
    (httpx logged the URL three times a session)."""
    secret = random_secret()
    password, segment, code, sig = (random_secret()[:20] for _ in range(4))
    heard: list[str] = []
    script = tmp_path / "script.txt"
    script.write_text("hello\ncrash\n")
    with ThreadedServer(secret_url_backend(secret, heard)) as backend:
        url = (
            f"http://hookuser:{password}@127.0.0.1:{backend.port}/hooks/{segment}/turn"
            f"?code={code}&sig={sig}"
        )
        env = {"CONVERSATION_HANDLER": "webhook", "WEBHOOK_URL": url, "WEBHOOK_SECRET": secret}
        with LiveServer(env=env) as live:
            result = subprocess.run(
                [sys.executable, "-m", "orchestrator", "simulate", "--url", live.base_url,
                 "--script", str(script), "--settle", "0.3"],
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DP: heard hello" in result.stdout.splitlines()
    # The backend was reached at the secret URL, with the credentials.
    assert any(f"/hooks/{segment}/turn?code={code}&sig={sig}" in line for line in heard)
    log = live.log_text
    assert "webhook request failed" in log  # the failed turn was logged, and its URL
    for part in (password, segment, code, sig):
        assert part not in log
