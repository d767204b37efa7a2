"""Security sweeps over the whole app: every route's credentials, CORS, the control
socket's Origin rule, and constant-time key comparison."""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse

from orchestrator.app import create_app
from orchestrator.control.endpoint import ControlSocketRoutes
from tests.conftest import random_secret
from tests.orchestrator.control_helpers import make_settings, next_named, say
from tokens import Keyring, SigningKey, SoulMachinesPolicy, SoulMachinesProfile, TokenCodec

ALL_PROFILES = ("soul-machines", "ccai", "videosdk", "voicegain")

# Documented as reachable without a credential (docs/http-api.md, docs/token-profiles.md,
# docs/deployment.md: /readyz is the load balancer's readiness probe and says no more
# than which backend is up).
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/ping"),
    ("GET", "/api/jwt"),
    ("GET", "/auth/authorize"),
    ("POST", "/auth/authorize"),
    ("GET", "/auth/token"),
    ("GET", "/videosdk/token"),
    ("POST", "/videosdk/token"),
}


def full_profile_values() -> dict[str, Any]:
    return {
        "profiles": ALL_PROFILES,
        "verify_api_key": random_secret(),
        "ccai_company_name": "ACME",
        "ccai_secret": random_secret(),
        "videosdk_api_key": "videosdk-api-key",
        "videosdk_secret": random_secret(),
        "voicegain_secret": random_secret(),
        "voicegain_admin_key": random_secret(),
        "rate_limit": "100000/minute",
        # The archive's routes (docs/archive.md): backend key, or a session's own UI token.
        "archive_url": "sqlite:///:memory:",
    }


def full_app(**settings: Any) -> Starlette:
    """Every route this server can mount: all profiles, /tokens/verify and the API key."""
    values: dict[str, Any] = {"api_keys": (random_secret(),), **full_profile_values()}
    values.update(settings)
    return create_app(make_settings(**values))


def walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method or WS, concrete path) for every endpoint, mounts included."""
    for route in routes:
        if isinstance(route, Mount):
            yield from walk(list(route.routes), prefix + route.path)
        elif isinstance(route, WebSocketRoute):
            yield "WS", prefix + route.path
        elif isinstance(route, Route):
            path = re.sub(r"\{[^}]+\}", "some-session", prefix + route.path)
            for method in sorted(route.methods or ()):
                if method != "HEAD":
                    yield method, path
        else:  # pragma: no cover - a new kind of route must be added to this sweep
            raise AssertionError(f"unknown route type {type(route).__name__}")


def endpoints_of(app: Starlette) -> Iterator[tuple[str, str]]:
    """``walk`` over the router, plus the WebSocket paths served ahead of it
    (``ControlSocketRoutes``)."""
    yield from walk(list(app.routes))
    for middleware in app.user_middleware:
        if middleware.cls is ControlSocketRoutes:
            for path in middleware.kwargs["routes"]:
                yield "WS", path


def foreign_token() -> str:
    """A well-formed token of the right type and key name, signed with another secret."""
    keyring = Keyring(SigningKey.from_text("test-key", random_secret()))
    profile = SoulMachinesProfile(TokenCodec(keyring), SoulMachinesPolicy("dh.example.com"))
    return profile.mint(control_url="wss://x/ws").jwt


def denial(client: TestClient, path: str, headers: dict[str, str]) -> WebSocketDenialResponse:
    """The HTTP response that refused a WebSocket handshake (fails if it was accepted)."""
    with (
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect(path, headers=headers),
    ):
        pass
    return denied.value


WRONG_CREDENTIALS: list[tuple[str, Callable[[], dict[str, str]]]] = [
    ("none", dict),
    ("random bearer", lambda: {"Authorization": f"Bearer {random_secret()}"}),
    ("foreign token", lambda: {"Authorization": f"Bearer {foreign_token()}"}),
    ("basic auth", lambda: {"Authorization": "Basic dXNlcjpwYXNz"}),
]


def is_console(method: str, path: str) -> bool:
    """The developer console's page and assets: public, in development only (docs/console.md)."""
    return method == "GET" and (path == "/console" or path.startswith("/console/"))


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(full_app()) as test_client:
        yield test_client


def test_the_sweep_sees_every_kind_of_route(client: TestClient) -> None:
    """The walk finds HTTP and WebSocket routes, public and protected, so the sweep is not empty."""
    endpoints = set(endpoints_of(client.app))  # type: ignore[arg-type]
    assert endpoints >= PUBLIC
    assert ("WS", "/ws") in endpoints
    assert ("POST", "/tokens/verify") in endpoints
    assert ("PATCH", "/sessions/some-session/variables") in endpoints
    assert ("GET", "/archive/sessions") in endpoints
    assert ("DELETE", "/archive/sessions/some-session") in endpoints


@pytest.mark.parametrize(
    "credential", [c for _, c in WRONG_CREDENTIALS], ids=[n for n, _ in WRONG_CREDENTIALS]
)
def test_every_non_public_route_refuses_missing_or_wrong_credentials(
    client: TestClient, credential: Callable[[], dict[str, str]]
) -> None:
    """Each route not documented as public answers 401/403 (WebSockets: a 403 denial)."""
    checked = 0
    for method, path in endpoints_of(client.app):  # type: ignore[arg-type]
        if (method, path) in PUBLIC or is_console(method, path):
            continue
        headers = credential()
        if method == "WS":
            status = denial(client, path, headers).status_code
        else:
            status = client.request(method, path, headers=headers, json={}).status_code
        assert status in (401, 403), f"{method} {path} answered {status}"
        checked += 1
    assert checked >= 14


def test_public_routes_answer_without_credentials(client: TestClient) -> None:
    """The documented public routes work with no credential at all (GET ones checked)."""
    for method, path in sorted(PUBLIC):
        if method == "GET":
            assert client.get(path).status_code == 200, path


# --- CORS --------------------------------------------------------------------------


def test_a_disallowed_origin_gets_no_cors_headers(client: TestClient) -> None:
    """HTTP: a foreign Origin gets no Access-Control-Allow-Origin, on requests or preflights."""
    for origin in ("https://evil.example", "http://localhost.evil.example:3000", "null"):
        response = client.get("/api/jwt", headers={"Origin": origin})
        assert "access-control-allow-origin" not in response.headers
        preflight = client.options(
            "/sessions/x",
            headers={"Origin": origin, "Access-Control-Request-Method": "PATCH"},
        )
        assert "access-control-allow-origin" not in preflight.headers
    allowed = client.get("/api/jwt", headers={"Origin": "http://localhost:3000"})
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"


def issued_token(client: TestClient) -> str:
    token: str = client.get("/api/jwt").json()["jwt"]
    return token


def test_the_control_socket_refuses_a_foreign_origin(client: TestClient) -> None:
    """A browser page on another site cannot open the control socket, even with a valid token."""
    token = issued_token(client)
    for origin in ("https://evil.example", "null", "http://localhost.evil.example"):
        refused = denial(client, f"/ws?access_token={token}", {"Origin": origin})
        assert refused.status_code == 403
        assert refused.json()["error"] == "origin_not_allowed"


def test_the_control_socket_accepts_an_allowed_origin_or_none(client: TestClient) -> None:
    """No Origin (the video host) and a CORS-allowed Origin (via-browser mode) both get in."""
    for headers in ({}, {"Origin": "http://localhost:3000"}):
        with client.websocket_connect(
            f"/ws?access_token={issued_token(client)}", headers=headers
        ) as ws:
            ws.send_text(say("hi"))
            assert (
                next_named(ws, "conversationResponse")["body"]["output"]["text"] == "You said: hi"
            )


def test_without_cors_origins_any_browser_origin_is_refused_on_the_control_socket() -> None:
    """With no CORS origins configured (the production default) every Origin is refused."""
    with TestClient(full_app(cors_origins=())) as client:
        token = issued_token(client)
        refused = denial(client, f"/ws?access_token={token}", {"Origin": "http://localhost:3000"})
        assert refused.status_code == 403


# --- constant-time comparison --------------------------------------------------------


def test_api_keys_are_compared_with_hmac_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sessions API, verify and Voicegain admin keys are checked with compare_digest."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    api_key = random_secret()
    profiles = make_settings(api_keys=(api_key,), **full_profile_values())
    app = create_app(profiles)
    presented = secrets.token_urlsafe(48)
    with TestClient(app) as client:
        for path, method, key in (
            ("/sessions", "GET", api_key),
            ("/tokens/verify", "POST", profiles.verify_api_key),
            ("/voicegain/api-tokens", "POST", profiles.voicegain_admin_key),
        ):
            calls.clear()
            response = client.request(
                method, path, headers={"Authorization": f"Bearer {presented}"}, json={}
            )
            assert response.status_code == 401
            assert (presented.encode(), str(key).encode()) in calls, path


def test_a_ui_token_on_a_non_ascii_session_path_is_a_403_not_a_500(client: TestClient) -> None:
    """compare_digest on non-ASCII str raised TypeError (a 500) for /sessions/é with a UI token."""
    response = client.get(
        "/sessions/%C3%A9", headers={"Authorization": f"Bearer {issued_token(client)}"}
    )
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
