"""Redis killed and restarted mid-conversation: live sockets keep talking, the API
says 503 meanwhile, and everything recovers by itself."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchestrator.simulate import HostSimulator
from tests.conftest import random_secret
from tests.live_server import LiveServer, free_port
from tests.redis_server import _wait_until_listening, redis_server

pytestmark = [pytest.mark.server, pytest.mark.redis]


class RestartableRedis:
    """A redis-server that can be killed and started again on the same port."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_until_listening(self.port, self.process)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    with redis_server(tmp_path):  # skips (or fails under REQUIRE_REDIS=1) without redis-server
        pass
    server = RestartableRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def eventually_status(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], status: int
) -> httpx.Response:
    response = await http.get(url, headers=headers)
    for _ in range(100):
        if response.status_code == status:
            return response
        await asyncio.sleep(0.1)
        response = await http.get(url, headers=headers)
    raise AssertionError(f"{url} stayed {response.status_code}, wanted {status}")


@pytest.mark.anyio
async def test_live_socket_survives_a_redis_restart(restartable_redis: RestartableRedis) -> None:
    """Kill Redis mid-conversation: turns still answer, the API is 503, then all recovers."""
    api_key = secrets.token_urlsafe(32)
    env = {
        "JWT_PUBLIC_KEY": "outage-key",
        "JWT_PRIVATE_KEY": random_secret(),
        "REDIS_URL": restartable_redis.url,
        "ORCHESTRATOR_API_KEY": api_key,
    }
    backend = {"Authorization": f"Bearer {api_key}"}
    with LiveServer(env) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            issued = (await http.get("/api/jwt")).json()
            sid = issued["session_id"]
            async with HostSimulator.connect(server.ws_url, issued["jwt"]) as host:
                await host.start(settle=0.1)
                await host.say("my name is Ada", settle=0.1)

                restartable_redis.kill()
                during = await host.say("still there?", settle=0.2)
                assert during[0].describe() == "DP: I do not know that one yet.\n    [fallback]"
                echoed = await host.say("hello", settle=0.2)
                assert echoed[0].describe() == "DP: Ada, you said: hello"
                unavailable = await http.get(f"/sessions/{sid}", headers=backend)
                assert unavailable.status_code == 503
                assert unavailable.json()["error"] == "store_unavailable"
                assert (await http.get("/readyz")).status_code == 503

                restartable_redis.start()
                await eventually_status(http, "/readyz", {}, 200)
                recovered = await eventually_status(http, f"/sessions/{sid}", backend, 200)
                body = recovered.json()
                assert body["status"] == "connected"
                assert body["variables"] == {"name": "Ada"}
                user_turns = [t["text"] for t in body["transcript"] if t["role"] == "user"]
                assert user_turns == ["my name is Ada", "still there?", "hello"]
                spoken = await http.post(
                    f"/sessions/{sid}/speak", headers=backend, json={"text": "back"}
                )
                assert spoken.status_code == 202
                heard = await host.collect(settle=0.2, within=5)
                assert any(m.envelope.body.get("text") == "back" for m in heard)
    assert "redis unreachable" in server.log_text
    assert "cluster resumed" in server.log_text
