"""``GET /auth/token`` -> ``{"token": ...}`` for the Google CCAI Platform web SDK.

Who the user is comes from a resolver the deployment chooses (its own
session, or a header its authenticating proxy sets); request parameters are
never trusted. Without a user, the visitor is anonymous: a random cookie
(HttpOnly, set here on first visit) keeps their derived ``identifier`` stable.
"""

from __future__ import annotations

import inspect
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokens.errors import ClaimsError
from tokens.profiles.ccai import CcaiProfile, CcaiUser
from tokens.web.http import ApiError, token_response

UserResolver = Callable[[Request], CcaiUser | Awaitable[CcaiUser | None] | None]
DEFAULT_ANONYMOUS_COOKIE = "ccai_anon"
ANONYMOUS_COOKIE_MAX_AGE = 365 * 24 * 60 * 60
_COOKIE_VALUE = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


def trusted_header_resolver(
    id_header: str, *, name_header: str | None = None, email_header: str | None = None
) -> UserResolver:
    """A resolver reading the user from headers set by the site's own auth proxy.

    Only safe when that proxy strips these headers from client requests.
    """

    def resolve(request: Request) -> CcaiUser | None:
        identifier = request.headers.get(id_header, "").strip()
        if not identifier:
            return None
        name = request.headers.get(name_header, "").strip() if name_header else ""
        email = request.headers.get(email_header, "").strip() if email_header else ""
        return CcaiUser(identifier, name or None, email or None)

    return resolve


@dataclass
class CcaiTokenEndpoint:
    """The handler, holding the profile, the user resolver and the cookie policy."""

    profile: CcaiProfile
    _: KW_ONLY
    resolver: UserResolver | None = None
    anonymous_cookie: str = DEFAULT_ANONYMOUS_COOKIE
    secure_cookie: bool = True

    def routes(self) -> list[Route]:
        return [Route("/auth/token", self.token, methods=["GET"])]

    async def _user(self, request: Request) -> CcaiUser | None:
        if self.resolver is None:
            return None
        result = self.resolver(request)
        if inspect.isawaitable(result):
            return await result
        return result

    async def token(self, request: Request) -> Response:
        try:
            user = await self._user(request)
        except ClaimsError as exc:
            detail = f"the authenticated user is unusable: {exc}"
            raise ApiError(422, exc.code, detail) from None
        new_cookie = None
        if user is None:
            anonymous_id = request.cookies.get(self.anonymous_cookie, "")
            if not _COOKIE_VALUE.match(anonymous_id):
                anonymous_id = new_cookie = secrets.token_urlsafe(32)
            user = CcaiUser(self.profile.anonymous_identifier(anonymous_id))
        response = token_response({"token": self.profile.mint(user)})
        if new_cookie is not None:
            response.set_cookie(
                self.anonymous_cookie,
                new_cookie,
                max_age=ANONYMOUS_COOKIE_MAX_AGE,
                httponly=True,
                secure=self.secure_cookie,
                samesite="lax",
            )
        return response
