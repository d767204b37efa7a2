"""The development signing key, shared by every instance on one Redis.

Without ``JWT_PRIVATE_KEY`` each ``orchestrator serve`` generates a key; two
instances with their own keys refuse each other's tokens (``bad_signature``).
With ``REDIS_URL`` the first instance stores its key (``SET NX``) and every
instance signs with the one stored. Development only: production requires a
configured key.
"""

from __future__ import annotations

import redis
from redis.exceptions import RedisError

from orchestrator.backend.redis_client import REDIS_SOCKET_TIMEOUT_SECONDS

DEV_KEY = "orch:dev-signing-key"


class SharedKeyUnavailable(Exception):
    """Redis could not be asked for the shared key (the message names no URL)."""


def shared_development_key(url: str, candidate: str) -> str:
    """The key stored in Redis, ``candidate`` when this instance is the first."""
    client = redis.Redis.from_url(
        url,
        socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
    )
    try:
        client.set(DEV_KEY, candidate, nx=True)
        stored = client.get(DEV_KEY)
    except RedisError as exc:
        raise SharedKeyUnavailable(str(exc) or type(exc).__name__) from None
    finally:
        client.close()
    if not isinstance(stored, bytes):
        raise SharedKeyUnavailable(f"{DEV_KEY} vanished as it was read")
    return stored.decode("utf-8", "replace")
