"""``Authorization: Bearer`` parsing and API-key checks for the token routes."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from tokens.web.http import BadRequest

CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer_token(request: Request) -> str:
    """The bearer credential of ``request``; ``BadRequest`` 401 when there is none."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise BadRequest(401, "unauthorized", "send Authorization: Bearer <token>")
    return credential


def require_api_key(request: Request, api_key: str) -> None:
    """Refuse ``request`` (401) unless it presents ``api_key`` as its bearer credential."""
    presented = bearer_token(request)
    if not hmac.compare_digest(presented.encode("utf-8"), api_key.encode("utf-8")):
        raise BadRequest(401, "unauthorized", "the API key is not valid")
