"""The live registry in Redis: which exact connection holds each session's control socket.

``orch:live:<session>`` = ``<start>:<instance>:<connection>``: the connection's
start time (microseconds since the epoch, 16 digits, so values order by age),
the instance and the connection's id, with a TTL the holder renews. Claiming
returns the previous holder (whose instance closes exactly that connection);
renewing is a compare-and-set, so after an outage in which two instances each
accepted a socket the later start time wins; releasing deletes the entry only
if it still names the releasing connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from orchestrator.backend.redis_store import KEY_PREFIX as SESSION_PREFIX
from orchestrator.backend.redis_store import LIVE_RECORD_TTL_SECONDS
from orchestrator.control.connection import ControlConnection
from orchestrator.sessions.store import StoreUnavailable

LIVE_PREFIX = "orch:live:"
LIVE_TTL_SECONDS = 60

# Delete the registry entry only if it still names this exact connection.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

# Heartbeat and resync: renew the entry if it names our connection (``held``);
# take it if it is empty, unreadable or names an older connection (``taken``,
# with the value replaced, whose connection must close); else a newer
# connection holds the session (``lost``, with its value: ours must close).
_ASSERT = """
local function newer(a, b)
  local ta, tb = tonumber(string.sub(a, 1, 16)), tonumber(string.sub(b, 1, 16))
  if tb == nil then return true end
  if ta ~= tb then return ta > tb end
  return a > b
end
local current = redis.call('get', KEYS[1])
if current == ARGV[1] then
  redis.call('expire', KEYS[1], ARGV[2])
  return {'held', ''}
end
if current and not newer(ARGV[1], current) then return {'lost', current} end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {'taken', current or ''}
"""


@dataclass(frozen=True)
class Holder:
    """The connection a registry entry names."""

    instance: str
    connection: str
    value: str


def registry_value(instance_id: str, connection: ControlConnection) -> str:
    """``<start>:<instance>:<connection>``; the fixed-width start orders values."""
    return f"{round(connection.started_at * 1_000_000):016d}:{instance_id}:{connection.id}"


def parse_holder(value: bytes | str) -> Holder | None:
    """The connection named by a registry value, or ``None`` if it names none."""
    text = value.decode() if isinstance(value, bytes) else value
    started, _, rest = text.partition(":")
    instance, _, connection = rest.rpartition(":")
    if not (started.isdigit() and instance and connection):
        return None
    return Holder(instance, connection, text)


@dataclass(frozen=True)
class Assertion:
    """What renewing one connection's entry found: ``held``, ``taken`` (from
    ``previous``, which must close) or ``lost`` (to ``previous``: ours must close)."""

    status: str
    previous: Holder | None


class LiveRegistryKeys:
    """The registry's keys and scripts on one instance's Redis client."""

    def __init__(self, client: aioredis.Redis, instance_id: str) -> None:
        self.client = client
        self.instance_id = instance_id
        self._release = client.register_script(_RELEASE)
        self._assert = client.register_script(_ASSERT)

    def value_of(self, connection: ControlConnection) -> str:
        return registry_value(self.instance_id, connection)

    async def claim(self, connection: ControlConnection) -> Holder | None:
        """Name ``connection`` as the holder; the previous holder, if any."""
        previous = await self.client.set(
            LIVE_PREFIX + connection.session.id,
            self.value_of(connection),
            ex=LIVE_TTL_SECONDS,
            get=True,
        )
        return parse_holder(previous) if isinstance(previous, (bytes, str)) else None

    async def release(self, session_id: str, value: str) -> None:
        """Delete the entry if it still is ``value``."""
        await self._release(keys=[LIVE_PREFIX + session_id], args=[value])

    async def holder(self, session_id: str) -> Holder | None:
        try:
            value = await self.client.get(LIVE_PREFIX + session_id)
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from None
        return parse_holder(value) if value is not None else None

    async def reassert(self, connections: Sequence[ControlConnection]) -> list[Assertion]:
        """Compare-and-set each connection's entry (and keep its session record
        alive), in one pipeline; raises ``RedisError``."""
        async with self.client.pipeline(transaction=False) as pipe:
            for connection in connections:
                session_id = connection.session.id
                await self._assert(
                    keys=[LIVE_PREFIX + session_id],
                    args=[self.value_of(connection), LIVE_TTL_SECONDS],
                    client=pipe,
                )
                pipe.expire(SESSION_PREFIX + session_id, LIVE_RECORD_TTL_SECONDS)
            results = await pipe.execute()
        return [
            Assertion(
                status.decode() if isinstance(status, bytes) else str(status),
                parse_holder(other) if other else None,
            )
            for status, other in results[::2]
        ]
