"""What anonymous sessions pin in a real server's memory (``orchestrator serve``)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from orchestrator.sessions.model import MAX_TURN_CHARS
from tests.conftest import random_secret
from tests.live_server import LiveServer
from tests.orchestrator.control_helpers import say

pytestmark = pytest.mark.server

TOKENS = 6
TURNS_PER_TOKEN = 100  # 200 transcript entries: TRANSCRIPT_TURNS' default
# As long as a conversationRequest may be under the default 64 KiB frame limit.
TEXT = "a" * (64 * 1024 - 200)


def rss_bytes(pid: int) -> int:
    """The process's resident set size, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def converse(server: LiveServer, turns: int) -> dict[str, str]:
    """One anonymous token, its control socket, ``turns`` max-size turns; the token."""
    issued = httpx.get(server.base_url + "/api/jwt").json()
    with connect(f"{server.ws_url}?access_token={issued['jwt']}", max_size=None) as ws:
        for _ in range(turns):
            ws.send(say(TEXT))
            while (message := json.loads(ws.recv(timeout=10)))["name"] != "conversationResponse":
                pass
            # What goes to the DP is never cut, only what the session keeps.
            assert message["body"]["output"]["text"] == f"You said: {TEXT}"
    return {"jwt": issued["jwt"], "session_id": issued["session_id"]}


def test_anonymous_sessions_full_of_max_size_turns_pin_little_memory() -> None:
    """Several anonymous tokens, each socket sending enough 64 KiB turns to fill
    TRANSCRIPT_TURNS, grow the server's RSS by far less than the ~12 MiB a session
    pinned when each entry kept its whole text (the transcript's byte budget and the
    per-entry cap hold); the sessions API shows the kept entries marked as cut."""
    with LiveServer({"JWT_PUBLIC_KEY": "live-key", "JWT_PRIVATE_KEY": random_secret()}) as live:
        assert live.process is not None
        converse(live, 20)  # warm-up: buffers and allocator arenas of a busy socket
        baseline = rss_bytes(live.process.pid)
        issued = [converse(live, TURNS_PER_TOKEN) for _ in range(TOKENS)]
        grown = rss_bytes(live.process.pid) - baseline
        # Kept: 6 x 128 KiB. Before the fix: 6 x 200 x 64 KiB = 75 MiB.
        assert grown < 24 * 1024 * 1024, f"RSS grew {grown / 2**20:.1f} MiB"
        record = httpx.get(
            f"{live.base_url}/sessions/{issued[-1]['session_id']}",
            headers={"Authorization": f"Bearer {issued[-1]['jwt']}"},
        ).json()
    last = record["transcript"][-1]
    assert last["text"] == f"You said: {TEXT}"[:MAX_TURN_CHARS]
    assert (last["truncated"], last["original_length"]) == (True, len(TEXT) + 10)
    assert record["counters"]["turns"] == TURNS_PER_TOKEN
