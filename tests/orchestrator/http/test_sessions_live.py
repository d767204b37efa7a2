"""The sessions API against a real ``orchestrator serve``: a lone surrogate never
makes a session unreadable, and a UI token's event stream ends with the token."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import random_secret
from tests.live_server import LiveServer
from tests.orchestrator.control_helpers import envelope, say
from tests.redis_server import redis_server
from tokens import Keyring, SigningKey, TokenCodec

pytestmark = pytest.mark.server

KEY_NAME = "live-key"
SESSION_SERVER = "dh.soulmachines.cloud"
JSON = {"Content-Type": "application/json"}


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@contextmanager
def serve(tmp_path: Path, backend: str) -> Iterator[tuple[LiveServer, str, str]]:
    """A development server (memory or Redis store); yields it, its key and its API key."""
    secret, api_key = random_secret(), random_secret()
    env = {
        "JWT_PUBLIC_KEY": KEY_NAME,
        "JWT_PRIVATE_KEY": secret,
        "SESSION_SERVER": SESSION_SERVER,
        "ORCHESTRATOR_API_KEY": api_key,
    }
    if backend == "redis":
        with redis_server(tmp_path) as url, LiveServer({**env, "REDIS_URL": url}) as live:
            yield live, secret, api_key
    else:
        with LiveServer(env) as live:
            yield live, secret, api_key


def sign(server: LiveServer, secret: str, *, lifetime: int, **custom: Any) -> tuple[str, str, int]:
    """A token for a new session signed with the server's key, bypassing ``mint``'s
    checks (as an older server could have) and its minimum lifetime; the session
    id; ``exp``."""
    now = int(time.time())
    session_id = secrets.token_urlsafe(16)
    claims = {
        "iss": KEY_NAME,
        "iat": now,
        "nbf": now - 5,
        "exp": now + lifetime,
        "sm-session-server": SESSION_SERVER,
        "sm-control": server.ws_url,
        "sm-control-via-browser": False,
        "session_id": session_id,
        **custom,
    }
    codec = TokenCodec(Keyring(SigningKey.from_text(KEY_NAME, secret)))
    return codec.encode(claims, "sm-control+jwt"), session_id, now + lifetime


def reply_to(ws: ClientConnection, text: str) -> str:
    """Say ``text``; the text of the next ``conversationResponse``."""
    ws.send(say(text))
    for _ in range(20):
        message = json.loads(ws.recv(timeout=5))
        if message["name"] == "conversationResponse":
            return str(message["body"]["output"]["text"])
    raise AssertionError("no conversationResponse")


def saved(
    http: httpx.Client, url: str, api_key: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The record at ``url`` once ``done`` (a closed socket's state is saved after it closes)."""
    for _ in range(50):
        response = http.get(url, headers=bearer(api_key))
        assert response.status_code == 200
        record: dict[str, Any] = response.json()
        if done(record):
            return record
        time.sleep(0.1)
    raise AssertionError(f"not saved: {record}")


@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_a_lone_surrogate_is_refused_and_the_session_stays_readable(
    tmp_path: Path, backend: str
) -> None:
    """Claims, a PATCH, a control frame and a signed token holding ``\\ud800`` are
    refused (400, a bad frame ignored on an open socket, 403/401 malformed), and
    ``GET /sessions/{id}`` with the API key answers 200 throughout."""
    with serve(tmp_path, backend) as (server, secret, api_key), httpx.Client() as http:
        base = server.base_url
        refused = http.post(
            base + "/auth/authorize", content=b'{"claims": {"a": "\\ud800"}}', headers=JSON
        )
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_json")

        issued = http.get(base + "/api/jwt").json()
        own = f"{base}/sessions/{issued['session_id']}"
        patch = http.patch(
            own + "/variables",
            content=b'{"a": "\\ud800"}',
            headers={**JSON, **bearer(issued["jwt"])},
        )
        assert (patch.status_code, patch.json()["error"]) == (400, "invalid_json")
        with connect(f"{server.ws_url}?access_token={issued['jwt']}", open_timeout=5) as ws:
            ws.send(envelope("state", {"session": {"sessionId": "\ud800"}}))  # as a \u escape
            assert reply_to(ws, "ping") == "You said: ping"
        record = saved(http, own, api_key, lambda r: r["counters"]["bad_frames"] == 1)
        assert record["dp_session_id"] is None

        # Signed with the right key (bypassing mint's checks), the claims still do not get in.
        token, session_id, _ = sign(server, secret, lifetime=600, note="\ud800")
        with pytest.raises(InvalidStatus) as denied:
            connect(f"{server.ws_url}?access_token={token}", open_timeout=5)
        assert denied.value.response.status_code == 403
        answer = http.get(f"{base}/sessions/{session_id}", headers=bearer(token))
        assert (answer.status_code, answer.json()["error"]) == (401, "malformed")
        assert http.get(f"{base}/sessions/{session_id}", headers=bearer(api_key)).status_code == 404


@pytest.mark.redis
def test_a_stored_lone_surrogate_still_reads_as_utf8_json(tmp_path: Path) -> None:
    """A record holding a lone surrogate that got into the store some other way (an
    older version, another writer) still answers 200 with UTF-8 JSON: the record,
    the list and the SSE snapshot."""
    with serve(tmp_path, "redis") as (server, _, api_key), httpx.Client() as http:
        issued = http.get(server.base_url + "/api/jwt").json()
        key = "orch:session:" + issued["session_id"]
        with redis.Redis.from_url(server.env["REDIS_URL"]) as store:
            record = json.loads(store.get(key))
            record["variables"] = {"bad": "\ud800"}
            store.set(key, json.dumps(record), keepttl=True)
        url = f"{server.base_url}/sessions/{issued['session_id']}"
        for response in (
            http.get(url, headers=bearer(api_key)),
            http.get(url, headers=bearer(issued["jwt"])),
            http.get(server.base_url + "/sessions", headers=bearer(api_key)),
        ):
            assert response.status_code == 200
            response.content.decode("utf-8")
        assert http.get(url, headers=bearer(api_key)).json()["variables"] == {"bad": "\ud800"}
        with http.stream("GET", url + "/events", headers=bearer(api_key)) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "event: snapshot"
            snapshot = json.loads(next(lines).removeprefix("data: "))
            assert snapshot["variables"] == {"bad": "\ud800"}


@pytest.mark.parametrize("via", ["bearer", "query"])
def test_a_ui_tokens_event_stream_ends_when_the_token_expires(tmp_path: Path, via: str) -> None:
    """Followed with a UI token that expires in 3 s, ``/events`` delivers events
    until then, closes at expiry, and sends nothing after it; the API key's
    stream of the same session goes on."""
    with serve(tmp_path, "memory") as (server, secret, api_key), httpx.Client() as http:
        token, session_id, expires_at = sign(server, secret, lifetime=5)
        url = f"{server.base_url}/sessions/{session_id}"
        with connect(f"{server.ws_url}?access_token={token}", open_timeout=5):
            query = f"?access_token={token}" if via == "query" else ""
            headers = bearer(token) if via == "bearer" else {}
            # Read timeout under the 15 s keepalive: a stream left open fails, not hangs.
            timeout = httpx.Timeout(5)
            with (
                http.stream("GET", url + "/events" + query, headers=headers, timeout=timeout) as ui,
                http.stream("GET", url + "/events", headers=bearer(api_key)) as backend,
            ):
                ui_lines, backend_lines = ui.iter_lines(), backend.iter_lines()
                assert next(ui_lines) == "event: snapshot"
                assert next(backend_lines) == "event: snapshot"
                before = http.patch(url + "/variables", json={"n": 1}, headers=bearer(api_key))
                assert before.status_code == 200
                assert "event: variables" in [next(ui_lines) for _ in range(4)]
                assert time.time() < expires_at, "too slow to test anything"
                time.sleep(max(0.0, expires_at + 0.5 - time.time()))
                after = http.patch(url + "/variables", json={"n": 2}, headers=bearer(api_key))
                assert after.status_code == 200
                late = list(ui_lines)  # returns only once the server closed the stream
                assert time.time() < expires_at + 3
                assert not [line for line in late if line.startswith(("event:", "data:"))]
                seen = [next(backend_lines) for _ in range(8)]
                assert any('"n":2' in line for line in seen)


def test_the_persona_id_reads_the_same_in_the_record_and_the_event_snapshot(
    tmp_path: Path,
) -> None:
    """The DP said ``personaId: 1`` (a number): ``GET /sessions/{id}`` and the SSE
    snapshot both show ``"persona_id": "1"``, as before the DP said anything, while
    ``stop-speaking`` still sends it back as the number."""
    with serve(tmp_path, "memory") as (server, _, api_key), httpx.Client() as http:
        issued = http.get(server.base_url + "/api/jwt").json()
        url = f"{server.base_url}/sessions/{issued['session_id']}"
        before = http.get(url, headers=bearer(api_key)).json()
        assert before["persona_id"] == "1"
        with connect(f"{server.ws_url}?access_token={issued['jwt']}", open_timeout=5) as ws:
            assert reply_to(ws, "hi") == "You said: hi"  # the frame says personaId 1
            record = http.get(url, headers=bearer(api_key)).json()
            with http.stream("GET", url + "/events", headers=bearer(api_key)) as stream:
                lines = stream.iter_lines()
                assert next(lines) == "event: snapshot"
                snapshot = json.loads(next(lines).removeprefix("data: "))
            assert http.post(url + "/stop-speaking", headers=bearer(api_key)).status_code == 202
            for _ in range(20):
                message = json.loads(ws.recv(timeout=5))
                if message["name"] == "stopSpeaking":
                    assert message["body"] == {"personaId": 1}
                    break
            else:
                raise AssertionError("no stopSpeaking")
        assert record["persona_id"] == snapshot["persona_id"] == "1"
