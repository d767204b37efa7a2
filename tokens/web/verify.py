"""``POST /tokens/verify``: token introspection for the deployment's own services.

Protected by an API key (Bearer). Body ``{"token", "profile"?, "origin"?}``;
answers 200 with ``{"valid": true, "profile", "claims"}`` or
``{"valid": false, "profile", "error", "detail"}`` (VideoSDK adds ``reason``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokens.registry import ProfileRegistry
from tokens.web.auth import ApiKeys
from tokens.web.http import ApiError, read_json_object, token_response

_FIELDS = frozenset({"token", "profile", "origin"})


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "invalid_body", f"{name} must be a string")
    return value


class VerifyEndpoint:
    """The handler, holding the registry and the API key."""

    def __init__(self, registry: ProfileRegistry, *, api_key: str) -> None:
        self.registry = registry
        self.api_keys = ApiKeys([api_key])

    def routes(self) -> list[Route]:
        return [Route("/tokens/verify", self.verify, methods=["POST"])]

    async def verify(self, request: Request) -> Response:
        self.api_keys.require(request)
        body = await read_json_object(request)
        unknown = set(body) - _FIELDS
        if unknown:
            raise ApiError(400, "unknown_field", f"unknown field(s) {sorted(unknown)}")
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise ApiError(400, "invalid_body", "token must be a non-empty string")
        # An unknown profile name is a 400; a Voicegain token while its store is
        # unreachable, a 503 (see tokens.web.errors).
        result = await self.registry.verify(
            token,
            profile=_optional_text(body, "profile"),
            origin=_optional_text(body, "origin"),
        )
        if result.valid:
            return token_response(
                {"valid": True, "profile": result.profile, "claims": result.claims}
            )
        return token_response(
            {"valid": False, "profile": result.profile, **self.registry.failure(result)}
        )
