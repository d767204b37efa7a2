"""Starlette routes for the Soul Machines token endpoints, in the shapes the
vendor's UIs expect:

- ``GET /api/jwt`` -> ``{"url", "jwt"}``: the Web SDK's zero-config
  ``scene.connect()``.
- ``GET``/``POST /auth/authorize`` -> ``{"success": true, "url", "jwt"}``: the
  vendor's express token server and React template.

Both add ``expires_at`` (Unix seconds) and ``session_id``. POST accepts
``{"claims": {...}, "ttl_seconds": n}``. Refusals are raised and answered by
``tokens.web.errors`` (claims or ttl the policy refuses: 422).

Custom claims from a POST without the API key are the client's choice: the
policy's ``client_claims`` rule (``CLIENT_CLAIMS``) restricts them and the token
names them (``client_claims``). With ``Authorization: Bearer <API key>`` the
backend chooses them: any name, unmarked; any other bearer credential is 401.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokens.profiles.soul_machines import IssuedToken, SoulMachinesProfile
from tokens.web.auth import ApiKeys, presented_token
from tokens.web.http import ApiError, json_bytes_response, read_json_object

IssuedHook = Callable[[IssuedToken, Request], Awaitable[None]]
_POST_FIELDS = frozenset({"claims", "ttl_seconds"})
# Derived control URLs by (scheme, Host header, server address). The Host header
# is the client's to choose, so the cache is bounded: full, it starts over.
_CONTROL_URL_CACHE_SIZE = 64


def control_url_from_request(request: Request, control_path: str) -> str:
    """This server's own WebSocket URL as the requesting client reaches it.

    Honest only behind a proxy whose forwarded headers uvicorn trusts; which
    is why production uses ``PUBLIC_URL`` instead.
    """
    scheme = "wss" if request.url.scheme in ("https", "wss") else "ws"
    return f"{scheme}://{request.url.netloc}{control_path}"


@functools.lru_cache(maxsize=16)
def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def token_body(issued: IssuedToken, *, vendor_success_flag: bool) -> bytes:
    """The JSON body for a minted token, as ``token_response`` would encode
    ``{["success": true,] "url", "jwt", "expires_at", "session_id"}``.

    Assembled, not encoded (this is the token endpoint's hot path): the JWT and
    the session id are base64url text with nothing to escape (``mint`` makes
    both), ``expires_at`` is an int, and the URL, one per deployment, is
    JSON-encoded once. tests/tokens/web/test_soul_machines.py pins the bytes.
    """
    claims = issued.claims
    success = '"success":true,' if vendor_success_flag else ""
    return (
        f'{{{success}"url":{_json_string(issued.session_server_url)},"jwt":"{issued.jwt}",'
        f'"expires_at":{claims.expires_at},"session_id":"{claims.session_id}"}}'
    ).encode()


class _ControlUrls:
    """``control_url_from_request``, remembered per (scheme, Host header, server).

    Those scope fields are everything ``request.url``'s scheme and netloc are
    computed from, so a hit returns exactly what the function would; building
    ``request.url`` (a ``URL`` and a ``urlsplit``) on every token request is what
    this saves.
    """

    def __init__(self, control_path: str) -> None:
        self.control_path = control_path
        self._cache: dict[tuple[Any, ...], str] = {}

    def __call__(self, request: Request) -> str:
        scope = request.scope
        host: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value
                break
        server = scope.get("server")
        key = (scope.get("scheme", "http"), host, None if server is None else tuple(server))
        url = self._cache.get(key)
        if url is None:
            url = control_url_from_request(request, self.control_path)
            if len(self._cache) >= _CONTROL_URL_CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = url
        return url


class SoulMachinesTokenEndpoints:
    """The handlers, holding the profile and the hook that records new sessions."""

    def __init__(
        self,
        profile: SoulMachinesProfile,
        *,
        control_path: str = "/ws",
        on_issued: IssuedHook | None = None,
        api_keys: ApiKeys | None = None,
    ) -> None:
        self.profile = profile
        self.api_keys = api_keys or ApiKeys(())
        self.control_path = control_path
        self.on_issued = on_issued
        self._control_url = _ControlUrls(control_path)

    def routes(self) -> list[Route]:
        return [
            Route("/api/jwt", self.api_jwt, methods=["GET"]),
            Route("/auth/authorize", self.authorize, methods=["GET", "POST"]),
        ]

    async def api_jwt(self, request: Request) -> Response:
        return await self._issue(request, vendor_success_flag=False)

    async def authorize(self, request: Request) -> Response:
        return await self._issue(request, vendor_success_flag=True)

    async def _issue(self, request: Request, *, vendor_success_flag: bool) -> Response:
        options = await self._options(request) if request.method == "POST" else {}
        control_url = None
        if self.profile.policy.control_url is None:
            control_url = self._control_url(request)
        issued = self.profile.mint(control_url=control_url, **options)
        if self.on_issued is not None:
            await self.on_issued(issued, request)
        return json_bytes_response(token_body(issued, vendor_success_flag=vendor_success_flag))

    def _backend(self, request: Request) -> bool:
        """Whether the backend asks (its API key as the bearer credential); a
        bearer credential that is not a key is refused rather than ignored."""
        token, _ = presented_token(request)
        if token is None:
            return False
        if not self.api_keys.matches(token):
            raise ApiError(401, "unauthorized", "the API key is not valid")
        return True

    async def _options(self, request: Request) -> dict[str, Any]:
        """``mint``'s options from a POST body."""
        body = await read_json_object(request)
        unknown = set(body) - _POST_FIELDS
        if unknown:
            raise ApiError(
                400,
                "unknown_field",
                f"unknown field(s) {sorted(unknown)}; expected claims, ttl_seconds",
            )
        options: dict[str, Any] = {"client_chosen": not self._backend(request)}
        if "claims" in body:
            if not isinstance(body["claims"], dict):
                raise ApiError(400, "invalid_claims", "claims must be a JSON object")
            options["custom_claims"] = body["claims"]
        if "ttl_seconds" in body:
            ttl = body["ttl_seconds"]
            if isinstance(ttl, bool) or not isinstance(ttl, int):
                raise ApiError(400, "invalid_ttl", "ttl_seconds must be an integer")
            options["ttl_seconds"] = ttl
        return options
