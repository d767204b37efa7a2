"""``GET``/``POST /videosdk/token`` -> ``{"token": ...}``: VideoSDK participant tokens.

GET takes query parameters, POST a JSON object, with the same names:
``permissions`` and ``roles`` (comma-separated in a query, lists in JSON),
``roomId``, ``participantId``, ``version``, ``expiresIn`` (``120m``, ``2h``,
``3600``; at most the configured lifetime).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokens.durations import parse_duration
from tokens.errors import ClaimsError, PolicyError
from tokens.profiles.videosdk import VideoSdkGrant, VideoSdkProfile
from tokens.web.http import BadRequest, error_response, read_json_object, token_response

FIELDS = frozenset({"permissions", "roles", "roomId", "participantId", "version", "expiresIn"})


def _list(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise BadRequest(400, "invalid_" + name, f"{name} must be a list of strings")


def grant_from(fields: dict[str, Any]) -> VideoSdkGrant:
    """A grant from query or JSON fields; ``BadRequest`` for unknown or mistyped ones."""
    unknown = set(fields) - FIELDS
    if unknown:
        raise BadRequest(
            400, "unknown_field", f"unknown field(s) {sorted(unknown)}; expected {sorted(FIELDS)}"
        )
    version = fields.get("version")
    if isinstance(version, str):
        if not version.isdigit():
            raise BadRequest(400, "invalid_version", "version must be an integer")
        version = int(version)
    ttl = None
    if "expiresIn" in fields:
        try:
            ttl = parse_duration(fields["expiresIn"])
        except PolicyError as exc:
            raise BadRequest(400, "invalid_expiry", f"expiresIn: {exc}") from None
    return VideoSdkGrant(
        permissions=_list("permissions", fields["permissions"])
        if "permissions" in fields
        else None,
        roles=_list("roles", fields.get("roles", [])),
        room_id=fields.get("roomId"),
        participant_id=fields.get("participantId"),
        version=version,
        ttl_seconds=ttl,
    )


class VideoSdkTokenEndpoint:
    """The handler, holding the profile."""

    def __init__(self, profile: VideoSdkProfile) -> None:
        self.profile = profile

    def routes(self) -> list[Route]:
        return [Route("/videosdk/token", self.token, methods=["GET", "POST"])]

    async def token(self, request: Request) -> Response:
        try:
            if request.method == "POST":
                fields = await read_json_object(request)
            else:
                fields = dict(request.query_params)
            token = self.profile.mint(grant_from(fields))
        except BadRequest as exc:
            return error_response(exc.status, exc.code, exc.detail)
        except PolicyError as exc:
            return error_response(403, exc.code, str(exc))
        except ClaimsError as exc:
            return error_response(422, exc.code, str(exc))
        return token_response({"token": token})
