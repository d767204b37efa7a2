"""Errors are answered once, at the boundary, in the one error shape."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from tokens.errors import (
    BadSignatureError,
    ClaimsTooLargeError,
    PolicyError,
    UnknownProfileError,
    WrongAudienceError,
)
from tokens.generation_store import StoreUnavailableError
from tokens.web.errors import EXCEPTION_HANDLERS
from tokens.web.http import ApiError

RAISED: dict[str, Exception] = {
    "api-error": ApiError(409, "conflict", "already there", {"X-Extra": "1"}),
    "api-401": ApiError(401, "unauthorized", "send Authorization: Bearer <token>"),
    "claims": ClaimsTooLargeError("claims exceed 2048 bytes"),
    "policy": PolicyError("ttl_seconds exceeds the maximum"),
    "profile": UnknownProfileError("profile 'x' is not enabled here"),
    "token": BadSignatureError("signature does not match"),
    "audience": WrongAudienceError("origin is not allowed"),
    "store": StoreUnavailableError("connection refused"),
}


async def _raise(request: Request) -> Response:
    raise RAISED[request.path_params["name"]]


async def _raise_on_socket(websocket: WebSocket) -> None:
    raise ApiError(400, "malformed", "not answered as HTTP")


@pytest.fixture
def client() -> TestClient:
    app = Starlette(
        routes=[Route("/raise/{name}", _raise), WebSocketRoute("/ws", _raise_on_socket)],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    return TestClient(app, raise_server_exceptions=True)


@pytest.mark.parametrize(
    ("name", "status", "code", "detail"),
    [
        ("api-error", 409, "conflict", "already there"),
        ("api-401", 401, "unauthorized", "send Authorization: Bearer <token>"),
        ("claims", 422, "claims_too_large", "claims exceed 2048 bytes"),
        ("policy", 422, "forbidden_by_policy", "ttl_seconds exceeds the maximum"),
        ("profile", 400, "unknown_profile", "profile 'x' is not enabled here"),
        ("token", 401, "bad_signature", "signature does not match"),
        ("audience", 403, "wrong_audience", "origin is not allowed"),
        ("store", 503, "store_unavailable", "token store unreachable: connection refused"),
    ],
)
def test_each_error_is_answered_in_the_one_error_shape_without_caching(
    client: TestClient, name: str, status: int, code: str, detail: str
) -> None:
    """Status, {"error", "detail"} and the no-store headers, whatever raised it."""
    response = client.get(f"/raise/{name}")
    assert response.status_code == status
    assert response.json() == {"error": code, "detail": detail}
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


@pytest.mark.parametrize("name", ["api-401", "token", "audience"])
def test_refused_credentials_carry_the_bearer_challenge(client: TestClient, name: str) -> None:
    """Every 401, and a token refused only for its origin (403), says to use Bearer."""
    assert client.get(f"/raise/{name}").headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("name", ["api-error", "claims", "profile", "store"])
def test_other_refusals_carry_no_challenge(client: TestClient, name: str) -> None:
    """A challenge is for credentials: a bad body or an outage does not ask for them."""
    assert "www-authenticate" not in client.get(f"/raise/{name}").headers


def test_extra_headers_are_sent_alongside(client: TestClient) -> None:
    """An error's own headers (Retry-After while the store is away) reach the client."""
    assert client.get("/raise/api-error").headers["x-extra"] == "1"
    assert client.get("/raise/store").headers["retry-after"] == "5"


def test_an_error_on_a_websocket_is_not_answered_as_http(client: TestClient) -> None:
    """A WebSocket route closes on its own terms: the handler passes its error on."""
    with pytest.raises(ApiError), client.websocket_connect("/ws"):
        pass
