"""Where the current API token of each (account, context) is remembered.

Only the most recently generated long-lived token is accepted; the store holds
its id (``jti``). The Redis store makes that hold across restarts and across
instances; the memory store is for one development process.
"""

from __future__ import annotations

from typing import Protocol

DEFAULT_KEY_PREFIX = "tokens:current-api-token:"


class StoreUnavailableError(Exception):
    """The store cannot be reached; the routes answer 503 ``store_unavailable``."""


class TokenGenerationStore(Protocol):
    """The current token id per (account, context)."""

    async def set_current(self, account_id: str, context_id: str, token_id: str) -> None:
        """Make ``token_id`` the only accepted token (revoking the previous one)."""

    async def current(self, account_id: str, context_id: str) -> str | None:
        """The accepted token id, or ``None`` if none was ever generated."""

    async def aclose(self) -> None:
        """Release connections."""


class MemoryGenerationStore:
    """Per-process store: forgets every token on restart (so all become revoked)."""

    def __init__(self) -> None:
        self._current: dict[tuple[str, str], str] = {}

    async def set_current(self, account_id: str, context_id: str, token_id: str) -> None:
        self._current[(account_id, context_id)] = token_id

    async def current(self, account_id: str, context_id: str) -> str | None:
        return self._current.get((account_id, context_id))

    async def aclose(self) -> None:
        return None
