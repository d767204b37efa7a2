"""Several instances behind a load balancer, coordinated through Redis.

- **Registry** (``registry.py``): ``orch:live:<session>`` names the exact
  connection holding the session. Claiming it tells the previous holder's
  instance to close exactly that connection (4001): the newest connection wins
  across instances too. A heartbeat renews our entries by compare-and-set, and
  so does the resync after an outage: when two instances each accepted a socket
  while Redis was away, the later start time wins and the other closes with
  4001 (instance clocks are assumed to be in sync, e.g. NTP).
- **Commands** (speak, send, variables, end) go to the holder's inbox,
  ``orch:inbox:<instance>``, over pub/sub, naming the connection (an instance
  whose named connection is gone answers "not live", 409), and the answer comes back on
  ``orch:reply:<instance>``. Pub/sub rather than streams: a command only makes
  sense now (a "speak" replayed minutes later, after a restart, would be
  wrong); ``PUBLISH`` says at once whether the holder is listening (0 receivers:
  its socket is gone, so the API answers 409); and dead instances leave no
  consumer groups behind.
- **Events** (``redis_events.py``): ``orch:events:<session>``,
  pattern-subscribed by every instance and handed to its local SSE followers.

If Redis goes away, live sockets carry on with their local state, the
listener retries with back-off, and everything resumes when Redis returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from orchestrator.backend.redis_client import redis_target
from orchestrator.backend.redis_events import EVENTS_PREFIX, ClusterEvents
from orchestrator.backend.registry import Holder, LiveRegistryKeys
from orchestrator.control.commands import CommandFailed, SessionNotLive, execute
from orchestrator.control.connection import ControlConnection
from orchestrator.control.live import LiveConnections
from orchestrator.logs import error_reason, get_logger
from orchestrator.sessions.events import SessionEvent
from orchestrator.sessions.store import StoreUnavailable

log = get_logger("orchestrator.cluster")

INBOX_PREFIX = "orch:inbox:"
REPLY_PREFIX = "orch:reply:"
HEARTBEAT_SECONDS = 20.0
COMMAND_TIMEOUT_SECONDS = 5.0
RESYNC_ATTEMPTS = 5
RESYNC_RETRY_SECONDS = 0.5


def new_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Cluster:
    """This instance's part in the cluster: registry, command routing, listener."""

    def __init__(
        self,
        client: aioredis.Redis,
        listener_client: aioredis.Redis,
        live: LiveConnections[ControlConnection],
        *,
        instance_id: str | None = None,
        command_timeout_seconds: float = COMMAND_TIMEOUT_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.client = client
        self.listener_client = listener_client
        self.live = live
        self.instance_id = instance_id or new_instance_id()
        self.command_timeout_seconds = command_timeout_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.events = ClusterEvents(client)
        self.inbox = INBOX_PREFIX + self.instance_id
        self.replies = REPLY_PREFIX + self.instance_id
        self.registry = LiveRegistryKeys(client, self.instance_id)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._listening = asyncio.Event()
        self._stopping = False
        self.log = log.bind(instance=self.instance_id)

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._spawn(self._listen())
        self._spawn(self._heartbeat())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 5)

    async def stop(self) -> None:
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- registry (LiveRegistry) -----------------------------------------------------

    async def claim(self, connection: ControlConnection) -> None:
        session_id = connection.session.id
        holder = await self.registry.claim(connection)
        # An older connection of ours was closed when this one attached.
        if holder is not None and holder.instance != self.instance_id:
            self.log.info("session moved here; old holder closes", session_id=session_id)
            # In the background: the new socket serves the DP meanwhile.
            self._spawn(self._replace_at(holder, session_id))

    async def _replace_at(self, holder: Holder, session_id: str) -> None:
        with contextlib.suppress(SessionNotLive, CommandFailed, StoreUnavailable, RedisError):
            await self._send(holder, session_id, "replace", {})

    async def release(self, connection: ControlConnection) -> None:
        await self.registry.release(connection.session.id, self.registry.value_of(connection))

    # --- routing (CommandRouter) -----------------------------------------------------

    async def run(self, session_id: str, op: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Run ``op`` on the exact connection the registry names.

        The local socket serves only when the registry names it, or names none
        (Redis away or come back empty): it carries on until the resync.
        """
        local = self.live.get(session_id)
        try:
            holder = await self.registry.holder(session_id)
        except StoreUnavailable:
            if local is None:
                raise
            holder = None
        if holder is None:
            if local is None:
                raise SessionNotLive(session_id)
            return await execute(local, op, args)
        if holder.instance == self.instance_id:
            if local is None or local.id != holder.connection:
                raise SessionNotLive(session_id)
            return await execute(local, op, args)
        return await self._send(holder, session_id, op, args)

    async def is_live(self, session_id: str) -> bool:
        return (
            self.live.get(session_id) is not None
            or await self.registry.holder(session_id) is not None
        )

    async def _send(
        self, holder: Holder, session_id: str, op: str, args: Mapping[str, Any]
    ) -> dict[str, Any]:
        request_id = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        message = {
            "id": request_id,
            "reply_to": self.replies,
            "session_id": session_id,
            "connection": holder.connection,
            "op": op,
            "args": dict(args),
        }
        try:
            try:
                receivers = await self.client.publish(
                    INBOX_PREFIX + holder.instance, json.dumps(message)
                )
            except RedisError as exc:
                raise StoreUnavailable(type(exc).__name__) from None
            if receivers == 0:
                # The holder is gone; its registry entry is stale.
                with contextlib.suppress(RedisError):
                    await self.registry.release(session_id, holder.value)
                raise SessionNotLive(session_id)
            try:
                reply = await asyncio.wait_for(future, self.command_timeout_seconds)
            except TimeoutError:
                raise CommandFailed(
                    f"the instance holding the session did not answer within "
                    f"{self.command_timeout_seconds:g} s"
                ) from None
        finally:
            self._pending.pop(request_id, None)
        if not reply.get("ok"):
            if reply.get("error") == "not_live":
                raise SessionNotLive(session_id)
            raise CommandFailed(str(reply.get("error")))
        result: dict[str, Any] = reply.get("result", {})
        return result

    # --- listening ---------------------------------------------------------------------

    async def _listen(self) -> None:
        backoff = 0.25
        down = False
        while not self._stopping:
            pubsub = self.listener_client.pubsub()
            try:
                await pubsub.subscribe(self.inbox, self.replies)
                await pubsub.psubscribe(EVENTS_PREFIX + "*")
                self._listening.set()
                if down:
                    self.log.info("redis reachable again; cluster resumed")
                    down = False
                    # Redis may have come back empty: put our live sessions back now.
                    self._spawn(self._resync())
                backoff = 0.25
                while not self._stopping:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self._on_message(message)
            except (RedisError, OSError) as exc:
                self._listening.clear()
                if not down:
                    self.log.warning(
                        "redis unreachable; retrying",
                        target=redis_target(self.listener_client),
                        error=error_reason(exc),
                    )
                    down = True
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            if not self._stopping:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _on_message(self, message: Mapping[str, Any]) -> None:
        channel = message.get("channel")
        channel = channel.decode() if isinstance(channel, bytes) else str(channel)
        try:
            data = json.loads(message["data"])
        except (TypeError, ValueError):
            self.log.warning("unreadable cluster message ignored", channel=channel)
            return
        if message.get("type") == "pmessage":
            with contextlib.suppress(KeyError, TypeError):
                self.events.deliver(
                    SessionEvent(data["session_id"], data["type"], data["data"], data["at"])
                )
        elif channel == self.inbox:
            self._spawn(self._serve(data))
        elif channel == self.replies:
            future = self._pending.get(str(data.get("id")))
            if future is not None and not future.done():
                future.set_result(data)

    async def _serve(self, request: Mapping[str, Any]) -> None:
        reply: dict[str, Any] = {"id": request.get("id")}
        session_id = str(request.get("session_id"))
        target = str(request.get("connection"))
        connection = self.live.get(session_id)
        if request.get("op") == "replace":
            replaced = await self.live.evict(session_id, target)
            reply.update(ok=True, result={"replaced": replaced})
        elif connection is None or connection.id != target:
            reply.update(ok=False, error="not_live")
        else:
            try:
                reply.update(
                    ok=True, result=await execute(connection, str(request["op"]), request["args"])
                )
            except Exception as exc:
                self.log.exception("cluster command failed", op=request.get("op"))
                reply.update(ok=False, error=type(exc).__name__)
        with contextlib.suppress(RedisError):
            await self.client.publish(str(request["reply_to"]), json.dumps(reply))

    async def _resync(self) -> None:
        # Redis may have come back empty, or another instance may have accepted a
        # socket for one of our sessions meanwhile: the newest connection wins.
        # The first try after an outage can fail on a pooled connection Redis
        # closed (redis-py loads a pipeline's scripts without retrying).
        for _ in range(RESYNC_ATTEMPTS):
            holding = await self._reassert(self.live.all())
            if holding is not None:
                for connection in holding:
                    await connection.persist()
                return
            await asyncio.sleep(RESYNC_RETRY_SECONDS)

    async def _heartbeat(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.heartbeat_seconds)
            await self._reassert(self.live.all())

    async def _reassert(
        self, connections: Sequence[ControlConnection]
    ) -> list[ControlConnection] | None:
        """Compare-and-set each connection's registry entry; return those still
        holding (``None`` when Redis could not be reached).

        A connection a newer one has superseded closes with 4001; an older
        holder we superseded is told to close.
        """
        if not connections:
            return []
        try:
            assertions = await self.registry.reassert(connections)
        except RedisError as exc:
            self.log.warning("live registry not renewed", error=error_reason(exc))
            return None
        holding: list[ControlConnection] = []
        for connection, assertion in zip(connections, assertions, strict=True):
            session_id = connection.session.id
            if assertion.status == "lost":
                self.log.info(
                    "a newer connection holds the session; closing ours", session_id=session_id
                )
                await self.live.evict(session_id, connection.id)
                continue
            holding.append(connection)
            holder = assertion.previous
            if holder is not None and holder.instance != self.instance_id:
                self.log.info("session taken over from an older connection", session_id=session_id)
                self._spawn(self._replace_at(holder, session_id))
        return holding
