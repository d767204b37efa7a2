"""The app end to end: a real uvicorn process answering the vendor's shapes, CORS and logs."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import httpx
import pytest
import websockets.exceptions
from starlette.testclient import TestClient
from websockets.sync.client import connect

from orchestrator.app import create_app
from orchestrator.config import Settings
from tests.conftest import random_secret
from tests.live_server import LiveServer
from tokens import Keyring, SigningKey, SoulMachinesPolicy, SoulMachinesProfile, TokenCodec

API_JWT_KEYS = {"url", "jwt", "expires_at", "session_id"}
AUTHORIZE_KEYS = {"success", "url", "jwt", "expires_at", "session_id"}
UI_ORIGIN = "https://app.example.com"
KEY_NAME = "live-key"


def verifier(secret: str) -> SoulMachinesProfile:
    keyring = Keyring(SigningKey.from_text(KEY_NAME, secret))
    return SoulMachinesProfile(
        TokenCodec(keyring), SoulMachinesPolicy(session_server="dh.soulmachines.cloud")
    )


def dev_env(secret: str) -> dict[str, str]:
    return {
        "JWT_PUBLIC_KEY": KEY_NAME,
        "JWT_PRIVATE_KEY": secret,
        "SESSION_SERVER": "dh.soulmachines.cloud",
        "CORS_ORIGINS": UI_ORIGIN,
    }


@pytest.fixture(scope="module")
def secret() -> str:
    return random_secret()


@pytest.fixture(scope="module")
def server(secret: str) -> Iterator[LiveServer]:
    """One development server for the module, with a known key and one UI origin."""
    with LiveServer(dev_env(secret)) as live:
        yield live


pytestmark = pytest.mark.server


def test_api_jwt_over_real_http(server: LiveServer, secret: str) -> None:
    """GET /api/jwt answers exactly the Web SDK's keys, with a token for this server's /ws."""
    response = httpx.get(server.base_url + "/api/jwt")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == API_JWT_KEYS
    assert body["url"] == "wss://dh.soulmachines.cloud"
    claims = verifier(secret).verify(body["jwt"])
    assert claims.issuer == KEY_NAME
    assert claims.session_id == body["session_id"]
    assert claims.expires_at == body["expires_at"]
    assert claims.control_url == server.ws_url


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_authorize_over_real_http(server: LiveServer, secret: str, method: str) -> None:
    """GET and POST /auth/authorize answer the vendor's success/url/jwt shape plus our two keys."""
    response = httpx.request(method, server.base_url + "/auth/authorize")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == AUTHORIZE_KEYS
    assert body["success"] is True
    assert verifier(secret).verify(body["jwt"]).session_id == body["session_id"]


def test_post_custom_claims_over_real_http(server: LiveServer, secret: str) -> None:
    """POSTed custom claims land in the token, named as the client's (``client_claims``,
    no API key was sent); an ``sm-`` claim is refused with the error shape."""
    ok = httpx.post(server.base_url + "/auth/authorize", json={"claims": {"user": "ada"}})
    custom = verifier(secret).verify(ok.json()["jwt"]).custom
    assert custom == {"user": "ada", "client_claims": ["user"]}
    refused = httpx.post(server.base_url + "/auth/authorize", json={"claims": {"sm-x": 1}})
    assert refused.status_code == 422
    assert refused.json()["error"] == "reserved_claim"
    assert set(refused.json()) == {"error", "detail"}


@pytest.mark.parametrize("path", ["/healthz", "/ping"])
def test_health_endpoints(server: LiveServer, path: str) -> None:
    """/healthz and the vendor's /ping answer {"status": "ok"}."""
    response = httpx.get(server.base_url + path)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def preflight(server: LiveServer, origin: str) -> httpx.Response:
    return httpx.options(
        server.base_url + "/auth/authorize",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )


def test_cors_preflight_allowed_for_the_configured_origin(server: LiveServer) -> None:
    """A browser preflight from the UI origin is allowed for POST with a JSON body."""
    response = preflight(server, UI_ORIGIN)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == UI_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "https://app.example.com.evil.tld", "https://evilapp.example.com"],
)
def test_cors_preflight_refused_for_other_origins(server: LiveServer, origin: str) -> None:
    """A preflight from any other origin, look-alikes included, gets no CORS permission."""
    response = preflight(server, origin)
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_cors_simple_request_headers(server: LiveServer) -> None:
    """A plain GET carries Access-Control-Allow-Origin only for the configured origin."""
    allowed = httpx.get(server.base_url + "/api/jwt", headers={"Origin": UI_ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == UI_ORIGIN
    other = httpx.get(server.base_url + "/api/jwt", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_logs_never_contain_a_token_or_the_key() -> None:
    """Tokens in query strings, headers and WebSocket URLs, and the key, never reach the log."""
    secret = random_secret()
    with LiveServer(dev_env(secret)) as live:
        tokens = [httpx.get(live.base_url + "/api/jwt").json()["jwt"] for _ in range(2)]
        tokens.append(httpx.post(live.base_url + "/auth/authorize").json()["jwt"])
        jwt = tokens[0]
        httpx.get(f"{live.base_url}/healthz?access_token={jwt}")
        httpx.get(f"{live.base_url}/ws?access_token={jwt}")
        httpx.get(f"{live.base_url}/nowhere/{jwt}?token={jwt}&key={secret}")
        httpx.get(live.base_url + "/api/jwt", headers={"Authorization": f"Bearer {jwt}"})
        with (
            contextlib.suppress(websockets.exceptions.WebSocketException, OSError),
            connect(f"{live.ws_url}?access_token={jwt}", open_timeout=5),
        ):
            pass
    log = live.log_text
    # The requests were logged, scrubbed: this test cannot pass by logging nothing.
    assert "/healthz?[redacted]" in log
    assert "WebSocket /ws?[redacted]" in log
    for token in tokens:
        assert token not in log
        for part in token.split("."):
            assert part not in log
    assert secret not in log


def test_no_configuration_runs_with_an_ephemeral_key_and_says_so() -> None:
    """With no configuration the server starts, issues tokens, warns of the key, stops on TERM."""
    with LiveServer() as live:
        body = httpx.get(live.base_url + "/api/jwt").json()
        assert set(body) == API_JWT_KEYS
    assert "ephemeral signing key" in live.log_text
    assert "mode=development" in live.log_text
    assert not live.killed
    assert "orchestrator stopped" in live.log_text


def test_production_logs_json_and_uses_public_url(secret: str) -> None:
    """In production every log line is JSON and sm-control comes from PUBLIC_URL."""
    env = {
        "ORCHESTRATOR_ENV": "production",
        "JWT_PUBLIC_KEY": KEY_NAME,
        "JWT_PRIVATE_KEY": secret,
        "SESSION_SERVER": "dh.soulmachines.cloud",
        "PUBLIC_URL": "https://orch.example.com",
        "CORS_ORIGINS": UI_ORIGIN,
    }
    with LiveServer(env) as live:
        jwt = httpx.get(live.base_url + "/api/jwt").json()["jwt"]
        httpx.get(f"{live.base_url}/healthz?access_token={jwt}")
    claims = verifier(secret).verify(jwt)
    assert claims.control_url == "wss://orch.example.com/ws"
    lines = [json.loads(line) for line in live.log_text.splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    assert "orchestrator started" in events
    assert any("/healthz?[redacted]" in event for event in events)
    assert jwt not in live.log_text


def test_app_factory_in_process() -> None:
    """create_app(settings) serves the health routes and tokens without a server process."""
    # ARCHIVE_URL=none: the development default would write the user's archive.
    settings = Settings.from_env(environ={"ARCHIVE_URL": "none"}, env_file=None)
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/ping").json() == {"status": "ok"}
        token = client.get("/api/jwt").json()["jwt"]
        assert client.app.state.sm_profile.verify(token).control_url == "ws://testserver/ws"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("session_server", "url"),
    [
        ("ws://127.0.0.1:9000", "ws://127.0.0.1:9000"),
        ("wss://staging.example:8443", "wss://staging.example:8443"),
        ("dh.soulmachines.cloud", "wss://dh.soulmachines.cloud"),
    ],
)
def test_api_jwt_url_keeps_the_session_servers_scheme(
    secret: str, session_server: str, url: str
) -> None:
    """SESSION_SERVER=ws://host:port (a local or staging session server) is answered as ws://,
    not rewritten to wss://; a bare host becomes wss://. The start-up log names the same URL."""
    with LiveServer({**dev_env(secret), "SESSION_SERVER": session_server}) as live:
        api_jwt = httpx.get(live.base_url + "/api/jwt").json()
        authorize = httpx.get(live.base_url + "/auth/authorize").json()
    assert api_jwt["url"] == url
    assert authorize["url"] == url
    assert verifier(secret).verify(api_jwt["jwt"]).session_server == url.split("://")[1]
    started = next(line for line in live.log_text.splitlines() if "orchestrator started" in line)
    assert f"session_server={url}" in started


def test_the_start_up_line_names_the_handler_and_the_archive_without_its_password() -> None:
    """Which logic answers and where transcripts go, read from the first line; a
    password in ARCHIVE_URL (or its query) never shown."""
    url = "postgresql://orch:hunter2hunter2@127.0.0.1:1/archive?password=query2query2"
    with LiveServer({"ARCHIVE_URL": url}) as live:
        pass
    started = next(line for line in live.log_text.splitlines() if "orchestrator started" in line)
    assert "handler=default" in started
    # The user and password both go (the log redactor hides any URL's userinfo).
    assert "archive=postgresql://[redacted]@127.0.0.1:1/archive" in started
    assert "hunter2hunter2" not in live.log_text
    assert "query2query2" not in live.log_text
    with LiveServer({"ARCHIVE_URL": "none", "CONVERSATION_HANDLER": "webhook",
                     "WEBHOOK_URL": "http://127.0.0.1:1/turn",
                     "WEBHOOK_SECRET": random_secret()}) as live:  # fmt: skip
        pass
    started = next(line for line in live.log_text.splitlines() if "orchestrator started" in line)
    assert "handler=webhook" in started
    assert "archive=off" in started
