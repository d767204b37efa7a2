"""Redis killed and restarted mid-conversation: live sockets keep talking, the API
says 503 meanwhile, and everything recovers by itself."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
import pytest

from orchestrator.simulate import HostSimulator
from tests.conftest import random_secret
from tests.live_server import LiveServer
from tests.orchestrator.backend.cluster_helpers import cluster_env
from tests.redis_server import RestartableRedis

pytestmark = [pytest.mark.server, pytest.mark.redis]


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
    env = cluster_env(restartable_redis.url, api_key)
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
                # The listener reconnects on its own backoff (up to 5 s), which may
                # be after the command client (retried at once) has recovered.
                for _ in range(100):
                    if "cluster resumed" in server.log_text:
                        break
                    await asyncio.sleep(0.1)
    (down,) = [line for line in server.log_text.splitlines() if "redis unreachable" in line]
    # It names the server and the driver's reason, not only an exception class.
    assert f"127.0.0.1:{restartable_redis.port}/0" in down
    assert "ConnectionError: Connection closed by server" in down  # was error=ConnectionError
    assert "cluster resumed" in server.log_text


def token_routes_env(redis_url: str, admin_key: str) -> dict[str, str]:
    return {
        "JWT_PUBLIC_KEY": "outage-key",
        "JWT_PRIVATE_KEY": random_secret(),
        "REDIS_URL": redis_url,
        "TOKEN_PROFILES": "soul-machines,voicegain",
        "VOICEGAIN_SECRET": random_secret(),
        "VOICEGAIN_ADMIN_KEY": admin_key,
        "TOKEN_RATE_LIMIT": "3/minute",
        # Each test client is a different address (the limit is per address).
        "TRUSTED_PROXY_HOPS": "1",
    }


def as_client(address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, **headers}


def test_token_routes_never_answer_500_while_redis_is_down_and_recover_at_once(
    restartable_redis: RestartableRedis,
) -> None:
    """A Redis restart between requests goes unnoticed: the first request on the
    pooled (now stale) connections succeeds. Redis down: Soul Machines tokens still
    issue, limited per process (one warning, no 500); Voicegain answers 503
    store_unavailable. Redis back: requests succeed and the limiter returns to Redis."""
    admin_key = random_secret()
    pair = {"accountId": "acct", "contextId": "ctx"}

    def admin(address: str) -> dict[str, str]:
        return as_client(address, Authorization=f"Bearer {admin_key}")

    with (
        LiveServer(token_routes_env(restartable_redis.url, admin_key)) as server,
        httpx.Client(base_url=server.base_url, timeout=30) as http,
    ):
        assert http.get("/api/jwt", headers=as_client("192.0.2.1")).status_code == 200
        up = http.post("/voicegain/api-tokens", json=pair, headers=admin("192.0.2.2"))
        assert up.status_code == 200

        restartable_redis.kill()
        restartable_redis.start()
        after_restart = http.post("/voicegain/api-tokens", json=pair, headers=admin("192.0.2.6"))
        assert after_restart.status_code == 200
        assert http.get("/api/jwt", headers=as_client("192.0.2.6")).status_code == 200
        assert "rate limit storage unreachable" not in server.log_text

        restartable_redis.kill()
        down = [http.get("/api/jwt", headers=as_client("192.0.2.3")) for _ in range(4)]
        assert [r.status_code for r in down] == [200, 200, 200, 429]
        assert down[-1].json()["error"] == "rate_limited"
        unavailable = http.post("/voicegain/api-tokens", json=pair, headers=admin("192.0.2.4"))
        assert unavailable.status_code == 503
        assert unavailable.json()["error"] == "store_unavailable"
        whoami = http.get("/voicegain/whoami", headers=as_client("192.0.2.4", **bearer(up)))
        assert whoami.status_code == 503

        restartable_redis.start()
        regenerated = http.post("/voicegain/api-tokens", json=pair, headers=admin("192.0.2.5"))
        assert regenerated.status_code == 200
        whoami = http.get(
            "/voicegain/whoami", headers=as_client("192.0.2.5", **bearer(regenerated))
        )
        assert whoami.status_code == 200
        for attempt in range(100):  # the limiter tries Redis again after STORAGE_RETRY_SECONDS
            if "rate limit storage reachable again" in server.log_text:
                break
            answer = http.get("/api/jwt", headers=as_client(f"198.51.100.{attempt}"))
            assert answer.status_code == 200
            time.sleep(0.1)
    log = server.log_text
    assert " 500 " not in log
    assert "Traceback" not in log
    assert log.count("rate limit storage unreachable") == 1
    assert "rate limit storage reachable again" in log


def bearer(response: httpx.Response) -> dict[str, str]:
    return {"Authorization": f"Bearer {response.json()['token']}"}
