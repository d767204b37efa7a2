"""The live registry names one exact connection, and the newest wins, also after
a Redis outage during which two instances each accepted a socket for one session."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import websockets

from orchestrator.simulate import HostSimulator
from tests.conftest import random_secret
from tests.live_server import LiveServer
from tests.orchestrator.test_redis_outage import RestartableRedis
from tests.redis_server import redis_server

pytestmark = [pytest.mark.server, pytest.mark.redis]


@pytest.fixture
def outage_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    with redis_server(tmp_path):  # skips (or fails under REQUIRE_REDIS=1) without redis-server
        pass
    server = RestartableRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.anyio
async def test_newest_socket_wins_after_a_redis_outage(outage_redis: RestartableRedis) -> None:
    """S1 on A, Redis down, S2 on B with the same token, Redis back: S1 closes with
    4001 within a resync cycle, and ``speak`` via A and via B both reach S2."""
    api_key = secrets.token_urlsafe(32)
    env = {
        "JWT_PUBLIC_KEY": "registry-key",
        "JWT_PRIVATE_KEY": random_secret(),
        "REDIS_URL": outage_redis.url,
        "ORCHESTRATOR_API_KEY": api_key,
    }
    backend = {"Authorization": f"Bearer {api_key}"}
    with ExitStack() as stack:
        a, b = (stack.enter_context(LiveServer(env)) for _ in range(2))
        async with httpx.AsyncClient(timeout=10) as http:
            issued = (await http.get(f"{a.base_url}/api/jwt")).json()
            sid, token = issued["session_id"], issued["jwt"]
            async with HostSimulator.connect(a.ws_url, token) as s1:
                await s1.start(settle=0.1)
                outage_redis.kill()
                async with HostSimulator.connect(b.ws_url, token) as s2:
                    await s2.start(settle=0.1)  # B serves S2 on local state meanwhile
                    outage_redis.start()

                    # The listeners retry with a back-off of at most 5 s, then resync.
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await asyncio.wait_for(s1.connection.recv(), 20)
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
