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

from tokens.errors import UnknownProfileError
from tokens.generation_store import StoreUnavailableError
from tokens.registry import ProfileRegistry
from tokens.web.auth import CHALLENGE, require_api_key
from tokens.web.http import BadRequest, error_response, read_json_object, token_response

_FIELDS = frozenset({"token", "profile", "origin"})


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(400, "invalid_body", f"{name} must be a string")
    return value


class VerifyEndpoint:
    """The handler, holding the registry and the API key."""

    def __init__(self, registry: ProfileRegistry, *, api_key: str) -> None:
        self.registry = registry
        self.api_key = api_key

    def routes(self) -> list[Route]:
        return [Route("/tokens/verify", self.verify, methods=["POST"])]

    async def verify(self, request: Request) -> Response:
        try:
            require_api_key(request, self.api_key)
            body = await read_json_object(request)
            unknown = set(body) - _FIELDS
            if unknown:
                raise BadRequest(400, "unknown_field", f"unknown field(s) {sorted(unknown)}")
            token = body.get("token")
            if not isinstance(token, str) or not token:
                raise BadRequest(400, "invalid_body", "token must be a non-empty string")
            result = await self.registry.verify(
                token,
                profile=_optional_text(body, "profile"),
                origin=_optional_text(body, "origin"),
            )
        except BadRequest as exc:
            headers = CHALLENGE if exc.status == 401 else None
            return error_response(exc.status, exc.code, exc.detail, headers=headers)
        except UnknownProfileError as exc:
            return error_response(400, exc.code, str(exc))
        except StoreUnavailableError as exc:
            # A Voicegain token cannot be checked against the store right now.
            detail = f"token store unreachable: {exc}"
            return error_response(503, "store_unavailable", detail, headers={"Retry-After": "5"})
        if result.valid:
            return token_response(
                {"valid": True, "profile": result.profile, "claims": result.claims}
            )
        return token_response(
            {"valid": False, "profile": result.profile, **self.registry.failure(result)}
        )
