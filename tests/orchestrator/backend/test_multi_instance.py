"""Several real instances behind one Redis: a token from A, the host's socket on
B, API calls on C, and followers anywhere all see one session."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets

from orchestrator.simulate import HostSimulator
from tests.live_server import LiveServer
from tests.orchestrator.backend.cluster_helpers import cluster_env, until

pytestmark = [pytest.mark.server, pytest.mark.redis]


@asynccontextmanager
async def follow(base_url: str, session_id: str, token: str) -> AsyncIterator[list[dict[str, Any]]]:
    """Collect the session's SSE events from one instance while the block runs."""
    events: list[dict[str, Any]] = []
    ready = asyncio.Event()

    async def read() -> None:
        async with (
            httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(10.0, read=60.0)) as http,
            http.stream(
                "GET",
                f"/sessions/{session_id}/events",
                headers={"Authorization": f"Bearer {token}"},
            ) as response,
        ):
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    ready.set()

    task = asyncio.create_task(read())
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield events
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.anyio
async def test_token_on_a_socket_on_b_commands_on_c(fresh_redis_url: str) -> None:
    """Commands, variables, followers and the newest-wins rule all work across instances."""
    api_key = secrets.token_urlsafe(32)
    env = cluster_env(fresh_redis_url, api_key, TOKEN_RATE_LIMIT="1000/second")
    backend = {"Authorization": f"Bearer {api_key}"}
    with ExitStack() as stack:
        a, b, c = (stack.enter_context(LiveServer(env)) for _ in range(3))
        async with httpx.AsyncClient(timeout=10) as http:
            issued = (await http.get(f"{a.base_url}/api/jwt")).json()
            sid, token = issued["session_id"], issued["jwt"]
            ui = {"Authorization": f"Bearer {token}"}
            # C already knows the session A issued.
            seen = await http.get(f"{c.base_url}/sessions/{sid}", headers=ui)
            assert seen.json()["status"] == "issued"

            async with (
                follow(a.base_url, sid, token) as events,
                HostSimulator.connect(b.ws_url, token) as host,
            ):
                welcome = await host.start(settle=0.2)
                assert "Hello!" in welcome[0].describe()

                spoken = await http.post(
                    f"{c.base_url}/sessions/{sid}/speak", headers=ui, json={"text": "From C"}
                )
                assert spoken.status_code == 202, spoken.text
                heard = await host.collect(settle=0.2, within=5)
                assert any(m.envelope.body.get("text") == "From C" for m in heard)

                patched = await http.patch(
                    f"{c.base_url}/sessions/{sid}/variables", headers=backend, json={"name": "Zed"}
                )
                assert patched.json() == {"variables": {"name": "Zed"}}
                reply = await host.say("hello", settle=0.2)
                assert reply[0].describe() == "DP: Zed, you said: hello"

                state = (await http.get(f"{a.base_url}/sessions/{sid}", headers=ui)).json()
                assert state["status"] == "connected"
                assert state["dp_session_id"] == host.dp_session_id
                assert state["variables"] == {"name": "Zed"}

                await until(lambda: any(e.get("type") == "variables" for e in events), seconds=5.0)
                types = [e.get("type") for e in events]
                assert "turn" in types
                assert "speech" in types

                # The same token connecting to C takes the session over; B's socket closes.
                async with HostSimulator.connect(c.ws_url, token) as newer:
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await asyncio.wait_for(host.connection.recv(), 5)
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
                    await asyncio.sleep(0.3)  # B's socket has closed: it must not record "ended"
                    record = (await http.get(f"{a.base_url}/sessions/{sid}", headers=ui)).json()
                    assert record["status"] == "connected"
                    assert not any(e.get("type") == "ended" for e in events)
                    spoken = await http.post(
                        f"{a.base_url}/sessions/{sid}/speak", headers=ui, json={"text": "Via A"}
                    )
                    assert spoken.status_code == 202
                    heard = await newer.collect(settle=0.2, within=5)
                    assert any(m.envelope.body.get("text") == "Via A" for m in heard)

                    ended = await http.delete(f"{b.base_url}/sessions/{sid}", headers=backend)
                    assert ended.status_code == 200
                    with pytest.raises(websockets.ConnectionClosed) as closed:
                        await asyncio.wait_for(newer.connection.recv(), 5)
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000

            after = await http.post(
                f"{b.base_url}/sessions/{sid}/speak", headers=ui, json={"text": "late"}
            )
            assert after.status_code == 409
            listed = await http.get(f"{b.base_url}/sessions", headers=backend)
            assert [s["id"] for s in listed.json()["sessions"]] == [sid]
