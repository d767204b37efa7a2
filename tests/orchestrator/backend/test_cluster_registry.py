"""The live registry names one exact connection, and the newest wins, also after
a Redis outage during which two instances each accepted a socket for one session."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from starlette.websockets import WebSocketState

from orchestrator.backend.cluster import Cluster
from orchestrator.backend.memory import MemoryStore
from orchestrator.backend.registry import LIVE_PREFIX, registry_value
from orchestrator.control.commands import SessionNotLive
from orchestrator.control.connection import ControlConnection, ControlServices
from orchestrator.control.live import LiveConnections
from orchestrator.control.options import ControlOptions
from orchestrator.handlers import ConversationRequest, Reply
from orchestrator.sessions.events import EventHub
from orchestrator.sessions.model import Session
from orchestrator.simulate import HostSimulator
from tests.live_server import LiveServer
from tests.orchestrator.backend.cluster_helpers import cluster_env, until
from tests.redis_server import RestartableRedis

pytestmark = [pytest.mark.server, pytest.mark.redis]


@pytest.mark.anyio
async def test_newest_socket_wins_after_a_redis_outage(restartable_redis: RestartableRedis) -> None:
    """S1 on A, Redis down, S2 on B with the same token, Redis back: S1 closes with
    4001 within a resync cycle, and ``speak`` via A and via B both reach S2."""
    api_key = secrets.token_urlsafe(32)
    env = cluster_env(restartable_redis.url, api_key)
    backend = {"Authorization": f"Bearer {api_key}"}
    with ExitStack() as stack:
        a, b = (stack.enter_context(LiveServer(env)) for _ in range(2))
        async with httpx.AsyncClient(timeout=10) as http:
            issued = (await http.get(f"{a.base_url}/api/jwt")).json()
            sid, token = issued["session_id"], issued["jwt"]
            async with HostSimulator.connect(a.ws_url, token) as s1:
                await s1.start(settle=0.1)
                restartable_redis.kill()
                async with HostSimulator.connect(b.ws_url, token) as s2:
                    await s2.start(settle=0.1)  # B serves S2 on local state meanwhile
                    restartable_redis.start()

                    # Both instances resync as soon as they are reconnected, well
                    # before the first 20 s heartbeat.
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await asyncio.wait_for(s1.connection.recv(), 10)
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001

                    for instance in (a, b):
                        text = f"via {instance.base_url}"
                        spoken = await http.post(
                            f"{instance.base_url}/sessions/{sid}/speak",
                            headers=backend,
                            json={"text": text},
                        )
                        assert spoken.status_code == 202, spoken.text
                        heard = await s2.collect(settle=0.2, within=5)
                        assert any(m.envelope.body.get("text") == text for m in heard)

                    record = await http.get(f"{a.base_url}/sessions/{sid}", headers=backend)
                    assert record.json()["status"] == "connected"


# --- the registry's compare-and-set, on a real Redis, with sockets in this process ---


class FakeSocket:
    """Just enough of a Starlette WebSocket for a ControlConnection that is never read."""

    def __init__(self) -> None:
        self.application_state = WebSocketState.CONNECTED
        self.scope: dict[str, Any] = {"type": "websocket"}
        self.sent: list[dict[str, Any]] = []
        self.closed_with: int | None = None

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = code
        self.application_state = WebSocketState.DISCONNECTED


async def _no_reply(request: ConversationRequest, conversation: Any) -> Reply | None:
    return None


def connection(session_id: str, *, started_at: float) -> ControlConnection:
    services = ControlServices(
        store=MemoryStore(grace_seconds=60),
        events=EventHub(),
        options=ControlOptions(handler=_no_reply),
        live=LiveConnections(),
    )
    session = Session(id=session_id, issuer="test", expires_at=int(time.time()) + 600)
    made = ControlConnection(FakeSocket(), session, services, verified=False)  # type: ignore[arg-type]
    made.started_at = started_at
    return made


def socket_of(made: ControlConnection) -> FakeSocket:
    fake = made.websocket
    assert isinstance(fake, FakeSocket)
    return fake


@asynccontextmanager
async def cluster_on(url: str, instance_id: str, **options: Any) -> AsyncIterator[Cluster]:
    """A started Cluster whose live sockets are the caller's to attach."""
    client = aioredis.Redis.from_url(url)
    listener = aioredis.Redis.from_url(url)
    live = LiveConnections[ControlConnection]()
    cluster = Cluster(client, listener, live, instance_id=instance_id, **options)
    await cluster.start()
    try:
        yield cluster
    finally:
        await cluster.stop()
        await client.aclose()
        await listener.aclose()


@pytest.mark.anyio
async def test_assert_script_renews_takes_over_or_gives_way(fresh_redis_url: str) -> None:
    """Heartbeat/resync CAS: ours renews, empty/older/unreadable is taken, newer wins."""
    async with cluster_on(fresh_redis_url, "a") as a:
        key = LIVE_PREFIX + "s"
        now = time.time()
        ours = registry_value("a", connection("s", started_at=now))
        older = registry_value("b", connection("s", started_at=now - 5))
        newer = registry_value("b", connection("s", started_at=now + 5))

        async def assert_ours() -> list[bytes]:
            result: list[bytes] = await a.registry._assert(keys=[key], args=[ours, 60])
            return result

        assert await assert_ours() == [b"taken", b""]
        await a.client.expire(key, 5)
        assert await assert_ours() == [b"held", b""]
        assert await a.client.ttl(key) > 5
        await a.client.set(key, older)
        assert await assert_ours() == [b"taken", older.encode()]
        assert await a.client.get(key) == ours.encode()
        await a.client.set(key, newer)
        assert await assert_ours() == [b"lost", newer.encode()]
        assert await a.client.get(key) == newer.encode()
        await a.client.set(key, "some-host-1234-abcdef")  # no start time: names no connection
        assert await assert_ours() == [b"taken", b"some-host-1234-abcdef"]


@pytest.mark.anyio
async def test_release_deletes_only_its_own_connection(fresh_redis_url: str) -> None:
    """Another connection of the same instance keeps the entry when an older one leaves."""
    async with cluster_on(fresh_redis_url, "a") as a:
        first = connection("s", started_at=time.time() - 1)
        second = connection("s", started_at=time.time())
        await a.claim(second)
        await a.release(first)
        assert await a.client.get(LIVE_PREFIX + "s") == registry_value("a", second).encode()
        await a.release(second)
        assert await a.client.get(LIVE_PREFIX + "s") is None


@pytest.mark.anyio
async def test_heartbeat_closes_the_older_of_two_unregistered_sockets(
    fresh_redis_url: str,
) -> None:
    """Both instances accepted a socket while the registry could not hear of it: the
    heartbeat alone closes the older with 4001, and commands via either reach the newer."""
    now = time.time()
    s1, s2 = connection("s", started_at=now - 1), connection("s", started_at=now)
    async with (
        cluster_on(fresh_redis_url, "a", heartbeat_seconds=0.1) as a,
        cluster_on(fresh_redis_url, "b", heartbeat_seconds=0.1) as b,
    ):
        await a.live.attach(s1)  # no registry attached yet: as during an outage
        await b.live.attach(s2)
        await until(lambda: socket_of(s1).closed_with is not None)
        assert socket_of(s1).closed_with == 4001
        assert socket_of(s2).closed_with is None
        assert a.live.get("s") is None and b.live.get("s") is s2
        assert await a.client.get(LIVE_PREFIX + "s") == registry_value("b", s2).encode()
        for instance in (a, b):
            await instance.run("s", "speak", {"text": instance.instance_id})
        spoken = [m["body"]["text"] for m in socket_of(s2).sent if m["name"] == "startSpeaking"]
        assert spoken == ["a", "b"]


@pytest.mark.anyio
async def test_commands_and_replace_target_the_exact_connection(fresh_redis_url: str) -> None:
    """A stale entry or replace naming a gone connection never reaches a newer one."""
    async with cluster_on(fresh_redis_url, "a") as a, cluster_on(fresh_redis_url, "b") as b:
        a.live.registry = a
        old = connection("s", started_at=time.time() - 1)
        await a.live.attach(old)
        stale = await b.registry.holder("s")
        assert stale is not None and stale.connection == old.id
        new = connection("s", started_at=time.time())
        await a.live.attach(new)  # replaces `old` in A and in the registry
        assert socket_of(old).closed_with == 4001

        # A "replace" still naming the old connection leaves the new one alone.
        assert await b._send(stale, "s", "replace", {}) == {"replaced": False}
        assert socket_of(new).closed_with is None
        # A command naming the old connection is refused, locally and remotely.
        await a.client.set(LIVE_PREFIX + "s", stale.value)
        with pytest.raises(SessionNotLive):
            await b.run("s", "speak", {"text": "to the old socket"})
        with pytest.raises(SessionNotLive):
            await a.run("s", "speak", {"text": "to the old socket"})
        assert socket_of(new).sent == []


@pytest.mark.anyio
async def test_listener_reconnect_resyncs_the_registry(fresh_redis_url: str) -> None:
    """When the listener's connection drops and comes back, the live sockets are
    re-registered (exact connection) at once, without waiting for the heartbeat."""
    held = connection("s", started_at=time.time())
    async with cluster_on(fresh_redis_url, "a", heartbeat_seconds=3600) as a:
        a.live.registry = a
        await a.live.attach(held)
        await a.client.delete(LIVE_PREFIX + "s")  # as if Redis had come back empty
        assert await a.client.client_kill_filter(_type="pubsub") >= 1
        entry: list[bytes | None] = [None]

        async def registered() -> None:
            for _ in range(200):
                entry[0] = await a.client.get(LIVE_PREFIX + "s")
                if entry[0] is not None:
                    return
                await asyncio.sleep(0.05)

        await registered()
        assert entry[0] == registry_value("a", held).encode()
