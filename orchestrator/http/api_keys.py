"""The backend's API keys, checked in one place for every route that takes them."""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

from orchestrator.control.handshake import ControlRefused, presented_token


class ApiKeys:
    """``ORCHESTRATOR_API_KEY`` values; compared in constant time, never from the URL."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = tuple(key.encode() for key in keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def matches(self, token: str) -> bool:
        presented = token.encode()
        # Every key is compared, whatever matches first.
        return any([hmac.compare_digest(presented, key) for key in self._keys])

    def in_header(self, connection: HTTPConnection) -> bool:
        """Whether the request carries a key as ``Authorization: Bearer``."""
        try:
            token, source = presented_token(connection)
        except ControlRefused:
            return False
        return token is not None and source == "bearer" and self.matches(token)
