"""Bearer credentials and API keys: read and checked in one place for every route."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.requests import HTTPConnection

from tokens.web.http import ApiError


def presented_token(
    connection: HTTPConnection, *, query: str | None = None
) -> tuple[str | None, str]:
    """The bearer credential and where it came from (``"query"`` or ``"bearer"``),
    or ``(None, "")``.

    With ``query``, the ``?<query>=`` parameter comes first: a browser's
    EventSource and WebSocket cannot set headers. Two different values there
    are refused (400 ``malformed``) rather than one picked.
    """
    if query is not None:
        values = connection.query_params.getlist(query)
        if len(set(values)) > 1:
            raise ApiError(400, "malformed", f"more than one {query}")
        if values and values[0]:
            return values[0], "query"
    scheme, _, credential = connection.headers.get("authorization", "").partition(" ")
    credential = credential.strip()
    if scheme.lower() == "bearer" and credential:
        return credential, "bearer"
    return None, ""


def bearer_token(connection: HTTPConnection) -> str:
    """The ``Authorization: Bearer`` credential; ``ApiError`` 401 when there is none."""
    token, _ = presented_token(connection)
    if token is None:
        raise ApiError(401, "unauthorized", "send Authorization: Bearer <token>")
    return token


class ApiKeys:
    """A deployment's API keys; compared in constant time, never read from the URL."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(key.encode() for key in keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def matches(self, token: str) -> bool:
        # Bytes: compare_digest raises TypeError for non-ASCII str.
        presented = token.encode()
        # Every key is compared, whatever matches first.
        return any([hmac.compare_digest(presented, key) for key in self._keys])

    def in_header(self, connection: HTTPConnection) -> bool:
        """Whether the request carries a key as ``Authorization: Bearer``."""
        token, _ = presented_token(connection)
        return token is not None and self.matches(token)

    def require(self, connection: HTTPConnection) -> None:
        """Refuse the request (401) unless its bearer credential is one of the keys."""
        if not self.matches(bearer_token(connection)):
            raise ApiError(401, "unauthorized", "the API key is not valid")
