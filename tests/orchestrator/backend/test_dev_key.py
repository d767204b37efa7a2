"""Two development instances on one Redis, with no key configured, share the
generated key: a token from A opens the control socket on B."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
import redis

from orchestrator.backend.dev_key import DEV_KEY
from orchestrator.cli import EXIT_UNAVAILABLE
from orchestrator.simulate import HostSimulator
from tests.live_server import REPO_ROOT, LiveServer, free_port, server_environment

pytestmark = [pytest.mark.server, pytest.mark.redis]


@pytest.mark.anyio
async def test_a_token_from_a_is_accepted_by_b(fresh_redis_url: str) -> None:
    env = {"REDIS_URL": fresh_redis_url}
    with LiveServer(env) as a, LiveServer(env) as b:
        async with httpx.AsyncClient(timeout=10) as http:
            issued = (await http.get(f"{a.base_url}/api/jwt")).json()
        async with HostSimulator.connect(b.ws_url, issued["jwt"]) as host:
            welcome = await host.start(settle=0.1)
        # The next restart signs with the same key, so A's token still works.
        with LiveServer(env) as c:
            async with HostSimulator.connect(c.ws_url, issued["jwt"]) as host:
                again = await host.start(settle=0.1)
    assert welcome[0].describe().startswith("DP: Hello!")
    assert again[0].describe().startswith("DP: Hello!")
    with redis.Redis.from_url(fresh_redis_url) as store:
        assert store.get(DEV_KEY) is not None
    for server in (a, b):
        assert "development signing key shared through Redis" in server.log_text
        assert "bad_signature" not in server.log_text


def test_without_redis_to_share_the_key_through_it_serve_says_so_and_exits_3() -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator", "serve", "--port", "0"],
        cwd=REPO_ROOT, env=server_environment({"REDIS_URL": unreachable}),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == EXIT_UNAVAILABLE
    [line] = result.stdout.strip().splitlines()
    assert line.startswith("error: no JWT_PRIVATE_KEY is set, and the development key that ")
    assert line.endswith("start Redis, or set JWT_PUBLIC_KEY and JWT_PRIVATE_KEY")
