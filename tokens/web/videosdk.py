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
from tokens.errors import PolicyError
from tokens.profiles.videosdk import VideoSdkGrant, VideoSdkProfile
from tokens.web.http import ApiError, read_json_object, token_response

FIELDS = frozenset({"permissions", "roles", "roomId", "participantId", "version", "expiresIn"})


def _list(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ApiError(400, "invalid_" + name, f"{name} must be a list of strings")


def grant_from(fields: dict[str, Any]) -> VideoSdkGrant:
    """A grant from query or JSON fields; ``ApiError`` for unknown or mistyped ones."""
    unknown = set(fields) - FIELDS
    if unknown:
        raise ApiError(
            400, "unknown_field", f"unknown field(s) {sorted(unknown)}; expected {sorted(FIELDS)}"
        )
    version = fields.get("version")
    if isinstance(version, str):
        if not version.isdigit():
            raise ApiError(400, "invalid_version", "version must be an integer")
        version = int(version)
    ttl = None
    if "expiresIn" in fields:
        try:
            ttl = parse_duration(fields["expiresIn"])
        except PolicyError as exc:
            raise ApiError(400, "invalid_expiry", f"expiresIn: {exc}") from None
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
        if request.method == "POST":
            fields = await read_json_object(request)
        else:
            fields = dict(request.query_params)
        grant = grant_from(fields)
        try:
            token = self.profile.mint(grant)
        except PolicyError as exc:
            # A grant beyond the deployment's policy is forbidden here (403),
            # where the other profiles answer 422.
            raise ApiError(403, exc.code, str(exc)) from None
        return token_response({"token": token})
