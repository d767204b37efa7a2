"""Routes for Voicegain-style API tokens.

- ``POST /voicegain/api-tokens`` (admin API key as Bearer), body
  ``{"accountId", "contextId"}`` -> ``{"token"}``: a new long-lived token,
  revoking the previous one for that pair.
- ``GET /voicegain/security/jwt?aud=...&expInSec=...`` (long-lived token as
  Bearer) -> ``{"token", "expires_at"}``: a short-lived browser token.
- ``GET /voicegain/whoami`` (any of them as Bearer; ``Origin`` checked against
  ``aud`` when present) -> ``{"accountId", "contextId", "kind"}``: the verifier
  as a route, for clients and for other services to call.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokens.errors import ClaimsError, InvalidTokenError, PolicyError, WrongAudienceError
from tokens.generation_store import StoreUnavailableError
from tokens.profiles.voicegain import VoicegainProfile
from tokens.web.auth import CHALLENGE, bearer_token, require_api_key
from tokens.web.http import BadRequest, error_response, read_json_object, token_response

_REGENERATE_FIELDS = frozenset({"accountId", "contextId"})


def store_unavailable_response(error: StoreUnavailableError) -> Response:
    """503 while the token store (Redis) cannot be reached; the client may retry."""
    return error_response(
        503, "store_unavailable", f"token store unreachable: {error}", headers={"Retry-After": "5"}
    )


def token_error_response(error: InvalidTokenError) -> Response:
    """401 for a refused bearer token (403 when only the origin is wrong)."""
    status = 403 if isinstance(error, WrongAudienceError) else 401
    return error_response(status, error.code, str(error), headers=CHALLENGE)


class VoicegainEndpoints:
    """The handlers, holding the profile and the admin key."""

    def __init__(self, profile: VoicegainProfile, *, admin_key: str) -> None:
        self.profile = profile
        self.admin_key = admin_key

    def routes(self) -> list[Route]:
        return [
            Route("/voicegain/api-tokens", self.regenerate, methods=["POST"]),
            Route("/voicegain/security/jwt", self.short_lived, methods=["GET"]),
            Route("/voicegain/whoami", self.whoami, methods=["GET"]),
        ]

    async def regenerate(self, request: Request) -> Response:
        try:
            require_api_key(request, self.admin_key)
            body = await read_json_object(request)
            if set(body) != _REGENERATE_FIELDS:
                raise BadRequest(400, "invalid_body", "send exactly {accountId, contextId}")
            token = await self.profile.regenerate(body["accountId"], body["contextId"])
        except BadRequest as exc:
            return error_response(exc.status, exc.code, exc.detail, headers=CHALLENGE)
        except ClaimsError as exc:
            return error_response(422, exc.code, str(exc))
        except StoreUnavailableError as exc:
            return store_unavailable_response(exc)
        return token_response({"token": token})

    async def short_lived(self, request: Request) -> Response:
        try:
            api_token = await self.profile.verify_api_token(bearer_token(request))
            unknown = set(request.query_params) - {"aud", "expInSec"}
            if unknown or "aud" not in request.query_params:
                raise BadRequest(400, "invalid_query", "send aud and expInSec only")
            raw_exp = request.query_params.get("expInSec", "")
            if not raw_exp.isdigit():
                raise BadRequest(400, "invalid_expiry", "expInSec must be a whole number")
            issued = await self.profile.mint_short(
                api_token, aud=request.query_params["aud"], exp_in_sec=int(raw_exp)
            )
        except BadRequest as exc:
            return error_response(exc.status, exc.code, exc.detail, headers=CHALLENGE)
        except InvalidTokenError as exc:
            return token_error_response(exc)
        except PolicyError as exc:
            return error_response(422, exc.code, str(exc))
        except ClaimsError as exc:
            return error_response(422, exc.code, str(exc))
        except StoreUnavailableError as exc:
            return store_unavailable_response(exc)
        return token_response({"token": issued.token, "expires_at": issued.expires_at})

    async def whoami(self, request: Request) -> Response:
        try:
            identity = await self.profile.verify(
                bearer_token(request), origin=request.headers.get("origin")
            )
        except BadRequest as exc:
            return error_response(exc.status, exc.code, exc.detail, headers=CHALLENGE)
        except InvalidTokenError as exc:
            return token_error_response(exc)
        except StoreUnavailableError as exc:
            return store_unavailable_response(exc)
        return token_response(
            {
                "accountId": identity.account_id,
                "contextId": identity.context_id,
                "kind": identity.kind,
            }
        )
