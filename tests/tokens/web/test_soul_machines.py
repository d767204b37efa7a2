"""The token routes in-process: the vendor's response shapes and request validation."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from tokens import IssuedToken, Keyring, SoulMachinesPolicy, SoulMachinesProfile, TokenCodec
from tokens.web.errors import EXCEPTION_HANDLERS
from tokens.web.http import DEFAULT_MAX_BODY_BYTES, NO_STORE, token_response
from tokens.web.soul_machines import SoulMachinesTokenEndpoints, token_body

API_JWT_KEYS = {"url", "jwt", "expires_at", "session_id"}
AUTHORIZE_KEYS = {"success", "url", "jwt", "expires_at", "session_id"}
ERROR_KEYS = {"error", "detail"}


def make_client(
    keyring: Keyring, issued: list[IssuedToken] | None = None, **policy: Any
) -> TestClient:
    settings: dict[str, Any] = {"session_server": "dh.soulmachines.cloud"}
    settings.update(policy)
    profile = SoulMachinesProfile(TokenCodec(keyring), SoulMachinesPolicy(**settings))

    async def on_issued(token: IssuedToken, _request: Request) -> None:
        if issued is not None:
            issued.append(token)

    endpoints = SoulMachinesTokenEndpoints(profile, control_path="/ws", on_issued=on_issued)
    app = Starlette(routes=endpoints.routes(), exception_handlers=EXCEPTION_HANDLERS)
    app.state.profile = profile
    return TestClient(app)


def verify(client: TestClient, token: str) -> Any:
    profile: SoulMachinesProfile = client.app.state.profile  # type: ignore[attr-defined]
    return profile.verify(token)


def test_api_jwt_answers_the_web_sdk_shape(keyring: Keyring) -> None:
    """GET /api/jwt returns exactly url, jwt, expires_at and session_id, with a valid token."""
    client = make_client(keyring)
    response = client.get("/api/jwt")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == API_JWT_KEYS
    assert body["url"] == "wss://dh.soulmachines.cloud"
    claims = verify(client, body["jwt"])
    assert body["session_id"] == claims.session_id
    assert body["expires_at"] == claims.expires_at
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_authorize_answers_the_vendor_token_server_shape(keyring: Keyring, method: str) -> None:
    """GET and POST /auth/authorize return success=true plus url, jwt, expires_at, session_id."""
    client = make_client(keyring)
    response = client.request(method, "/auth/authorize")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == AUTHORIZE_KEYS
    assert body["success"] is True
    assert body["url"] == "wss://dh.soulmachines.cloud"
    assert verify(client, body["jwt"]).session_id == body["session_id"]


def test_control_url_is_derived_from_the_request_in_development(keyring: Keyring) -> None:
    """Without a fixed control URL, sm-control is this server as the client reached it."""
    client = make_client(keyring)
    plain = client.get("/api/jwt").json()["jwt"]
    assert verify(client, plain).control_url == "ws://testserver/ws"
    secure = client.get("https://testserver:8443/api/jwt").json()["jwt"]
    assert verify(client, secure).control_url == "wss://testserver:8443/ws"


def test_configured_control_url_is_used_whatever_the_request(keyring: Keyring) -> None:
    """With a fixed control URL (PUBLIC_URL), the Host header cannot change sm-control."""
    client = make_client(keyring, control_url="wss://orch.example.com/ws")
    token = client.get("/api/jwt", headers={"Host": "evil.example"}).json()["jwt"]
    assert verify(client, token).control_url == "wss://orch.example.com/ws"


def test_every_request_gets_a_new_session(keyring: Keyring) -> None:
    """Two requests give two session ids, and the hook sees each issued token."""
    issued: list[IssuedToken] = []
    client = make_client(keyring, issued=issued)
    first = client.get("/api/jwt").json()["session_id"]
    second = client.post("/auth/authorize").json()["session_id"]
    assert first != second
    assert [token.claims.session_id for token in issued] == [first, second]


def test_post_carries_custom_claims_and_a_shorter_lifetime(keyring: Keyring) -> None:
    """POST {"claims", "ttl_seconds"} puts the claims into the token (named as the
    client's in ``client_claims``) and shortens its life."""
    client = make_client(keyring)
    response = client.post(
        "/auth/authorize", json={"claims": {"user": "ada", "lang": "en"}, "ttl_seconds": 300}
    )
    assert response.status_code == 200
    claims = verify(client, response.json()["jwt"])
    assert claims.custom == {"user": "ada", "lang": "en", "client_claims": ["lang", "user"]}
    assert claims.expires_at - claims.issued_at == 300


def post_error(client: TestClient, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = client.post("/auth/authorize", **kwargs)
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert response.headers["cache-control"] == "no-store"
    return response.status_code, body


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"json": {"claims": {"sm-control": "wss://evil/ws"}}}, 422, "reserved_claim"),
        ({"json": {"claims": {"session_id": "mine"}}}, 422, "reserved_claim"),
        ({"json": {"claims": {"big": "x" * 5000}}}, 422, "claims_too_large"),
        ({"json": {"ttl_seconds": 10 * 3600}}, 422, "forbidden_by_policy"),
        ({"json": {"ttl_seconds": "300"}}, 400, "invalid_ttl"),
        ({"json": {"ttl_seconds": True}}, 400, "invalid_ttl"),
        ({"json": {"claims": ["a"]}}, 400, "invalid_claims"),
        ({"json": {"claim": {}}}, 400, "unknown_field"),
        ({"json": ["not", "an", "object"]}, 400, "invalid_body"),
        (
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_json",
        ),
        ({"content": b"user=ada", "headers": {"Content-Type": "text/plain"}}, 415, None),
    ],
)
def test_bad_post_bodies_get_a_json_error(
    keyring: Keyring, kwargs: dict[str, Any], status: int, code: str | None
) -> None:
    """Each invalid request is refused with its status and a stable ``error`` code."""
    got_status, body = post_error(make_client(keyring), **kwargs)
    assert got_status == status
    assert body["error"] == (code or "unsupported_media_type")


def test_oversized_body_is_refused(keyring: Keyring) -> None:
    """A body over the limit is refused with 413 before it is parsed."""
    content = b'{"claims": {"v": "' + b"x" * DEFAULT_MAX_BODY_BYTES + b'"}}'
    status, body = post_error(
        make_client(keyring), content=content, headers={"Content-Type": "application/json"}
    )
    assert status == 413
    assert body["error"] == "body_too_large"


def test_get_ignores_any_body_and_query(keyring: Keyring) -> None:
    """GET takes no options: the Web SDK's page query string is passed along harmlessly."""
    client = make_client(keyring)
    response = client.get("/api/jwt?claims=%7B%22sm-control%22%3A1%7D&ttl_seconds=1")
    assert response.status_code == 200
    claims = verify(client, response.json()["jwt"])
    assert claims.custom == {}
    assert claims.expires_at - claims.issued_at == 30 * 60


def test_api_jwt_refuses_post(keyring: Keyring) -> None:
    """/api/jwt is GET only, as the Web SDK calls it."""
    assert make_client(keyring).post("/api/jwt").status_code == 405


def test_token_response_is_json_response_with_no_store_byte_for_byte() -> None:
    """The hot-path builder sends exactly what JSONResponse(body, headers=NO_STORE) would."""
    body = {"url": "wss://dh.soulmachines.cloud", "jwt": "a.b.c", "expires_at": 1, "note": "é"}
    fast, reference = token_response(body), JSONResponse(body, headers=NO_STORE)
    assert fast.body == reference.body
    assert sorted(fast.raw_headers) == sorted(reference.raw_headers)
    assert fast.status_code == reference.status_code == 200


@pytest.mark.parametrize("vendor_success_flag", [False, True])
@pytest.mark.parametrize("session_server", ["dh.soulmachines.cloud", "dh.exämple.invalid"])
def test_token_body_is_the_json_encoding_of_the_token_fields(
    keyring: Keyring, vendor_success_flag: bool, session_server: str
) -> None:
    """The assembled /api/jwt and /auth/authorize body is byte for byte what
    token_response would encode from the same fields."""
    profile = SoulMachinesProfile(TokenCodec(keyring), SoulMachinesPolicy(session_server))
    issued = profile.mint(control_url="ws://localhost:8080/ws", custom_claims={"note": 'é"\\'})
    fields: dict[str, Any] = {"success": True} if vendor_success_flag else {}
    fields.update(
        url=issued.session_server_url,
        jwt=issued.jwt,
        expires_at=issued.claims.expires_at,
        session_id=issued.claims.session_id,
    )
    body = token_body(issued, vendor_success_flag=vendor_success_flag)
    assert body == token_response(fields).body
