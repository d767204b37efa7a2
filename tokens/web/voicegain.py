"""Routes for Voicegain-style API tokens.

- ``POST /voicegain/api-tokens`` (admin API key as Bearer), body
  ``{"accountId", "contextId"}`` -> ``{"token"}``: a new long-lived token,
  revoking the previous one for that pair.
- ``GET /voicegain/security/jwt?aud=...&expInSec=...`` (long-lived token as
  Bearer) -> ``{"token", "expires_at"}``: a short-lived browser token.
- ``GET /voicegain/whoami`` (any of them as Bearer; ``Origin`` checked against
  ``aud`` when present) -> ``{"accountId", "contextId", "kind"}``: the verifier
  as a route, for clients and for other services to call.

Refusals are raised and answered by ``tokens.web.errors``: a refused bearer
token is a 401 (403 when only its ``Origin`` is wrong), an unreachable token
store a 503 with ``Retry-After``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokens.profiles.voicegain import VoicegainProfile
from tokens.web.auth import ApiKeys, bearer_token
from tokens.web.http import ApiError, read_json_object, token_response

_REGENERATE_FIELDS = frozenset({"accountId", "contextId"})


class VoicegainEndpoints:
    """The handlers, holding the profile and the admin key."""

    def __init__(self, profile: VoicegainProfile, *, admin_key: str) -> None:
        self.profile = profile
        self.admin_keys = ApiKeys([admin_key])

    def routes(self) -> list[Route]:
        return [
            Route("/voicegain/api-tokens", self.regenerate, methods=["POST"]),
            Route("/voicegain/security/jwt", self.short_lived, methods=["GET"]),
            Route("/voicegain/whoami", self.whoami, methods=["GET"]),
        ]

    async def regenerate(self, request: Request) -> Response:
        self.admin_keys.require(request)
        body = await read_json_object(request)
        if set(body) != _REGENERATE_FIELDS:
            raise ApiError(400, "invalid_body", "send exactly {accountId, contextId}")
        token = await self.profile.regenerate(body["accountId"], body["contextId"])
        return token_response({"token": token})

    async def short_lived(self, request: Request) -> Response:
        api_token = await self.profile.verify_api_token(bearer_token(request))
        unknown = set(request.query_params) - {"aud", "expInSec"}
        if unknown or "aud" not in request.query_params:
            raise ApiError(400, "invalid_query", "send aud and expInSec only")
        raw_exp = request.query_params.get("expInSec", "")
        if not raw_exp.isdigit():
            raise ApiError(400, "invalid_expiry", "expInSec must be a whole number")
        issued = await self.profile.mint_short(
            api_token, aud=request.query_params["aud"], exp_in_sec=int(raw_exp)
        )
        return token_response({"token": issued.token, "expires_at": issued.expires_at})

    async def whoami(self, request: Request) -> Response:
        identity = await self.profile.verify(
            bearer_token(request), origin=request.headers.get("origin")
        )
        return token_response(
            {
                "accountId": identity.account_id,
                "contextId": identity.context_id,
                "kind": identity.kind,
            }
        )
