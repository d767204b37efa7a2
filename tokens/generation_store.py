"""Where the current API token of each (account, context) is remembered.

Only the most recently generated long-lived token is accepted; the store holds
its id (``jti``). The Redis store makes that hold across restarts and across
instances; the memory store is for one development process.
"""

from __future__ import annotations

from typing import Protocol

import redis.asyncio as aioredis

DEFAULT_KEY_PREFIX = "tokens:current-api-token:"


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


class RedisGenerationStore:
    """Store in Redis, shared by every instance using the same server.

    Account and context ids never contain ``:`` (the profile validates them),
    so the key ``prefix + account + ":" + context`` is unambiguous.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.key_prefix = key_prefix
        self.owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> RedisGenerationStore:
        """A store with its own client, closed by :meth:`aclose`."""
        return cls(aioredis.Redis.from_url(url), key_prefix=key_prefix, owns_client=True)

    def _key(self, account_id: str, context_id: str) -> str:
        return f"{self.key_prefix}{account_id}:{context_id}"

    async def set_current(self, account_id: str, context_id: str, token_id: str) -> None:
        await self.client.set(self._key(account_id, context_id), token_id)

    async def current(self, account_id: str, context_id: str) -> str | None:
        value = await self.client.get(self._key(account_id, context_id))
        if value is None:
            return None
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    async def aclose(self) -> None:
        if self.owns_client:
            await self.client.aclose()
