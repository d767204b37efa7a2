"""The Voicegain profile's current-token store in Redis, shared by every instance."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from tokens.generation_store import DEFAULT_KEY_PREFIX, StoreUnavailableError


@dataclass
class RedisGenerationStore:
    """Store in Redis, shared by every instance using the same server.

    Account and context ids never contain ``:`` (the profile validates them),
    so the key ``prefix + account + ":" + context`` is unambiguous.
    """

    client: aioredis.Redis
    _: KW_ONLY
    key_prefix: str = DEFAULT_KEY_PREFIX
    owns_client: bool = False

    @classmethod
    def from_url(cls, url: str, *, key_prefix: str = DEFAULT_KEY_PREFIX) -> RedisGenerationStore:
        """A store with its own client, closed by :meth:`aclose` (a command cut by a
        Redis restart is retried on a fresh connection)."""
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 2, (RedisConnectionError,)),
        )
        return cls(client, key_prefix=key_prefix, owns_client=True)

    def _key(self, account_id: str, context_id: str) -> str:
        return f"{self.key_prefix}{account_id}:{context_id}"

    async def set_current(self, account_id: str, context_id: str, token_id: str) -> None:
        try:
            await self.client.set(self._key(account_id, context_id), token_id)
        except RedisError as exc:
            raise StoreUnavailableError(type(exc).__name__) from None

    async def current(self, account_id: str, context_id: str) -> str | None:
        try:
            value = await self.client.get(self._key(account_id, context_id))
        except RedisError as exc:
            raise StoreUnavailableError(type(exc).__name__) from None
        if value is None:
            return None
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    async def aclose(self) -> None:
        if self.owns_client:
            await self.client.aclose()
