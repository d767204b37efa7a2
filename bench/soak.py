"""Load and soak: many simulated video hosts for a bounded time, with turns and
API commands mixed in. Counts lost and misrouted replies (there must be none)
and reports the server's resident memory after warm-up and at the end.

Each host has its own token (its own session) and says numbered lines tagged
with its id; the default handler echoes them, so a reply carrying another
host's tag is misrouted and a missing one is lost. Every few turns the host
also asks the sessions API to make *its* DP speak a tagged line, which must
arrive on its own socket. With ``--instances 2`` (needs ``redis-server``) the
hosts connect to one instance and the API calls go to the other.

Usage: python bench/soak.py [--hosts 1000] [--seconds 180] [--instances 1|2] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import resource
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cross_instance import redis, server  # noqa: E402

REPLY_TIMEOUT_SECONDS = 15.0


@dataclass
class Tally:
    turns_ok: int = 0
    turns_lost: int = 0
    misrouted: int = 0
    commands_ok: int = 0
    commands_lost: int = 0
    connect_errors: int = 0
    latencies: list[float] = field(default_factory=list)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def request(text: str) -> str:
    return json.dumps(
        {
            "category": "scene",
            "kind": "event",
            "name": "conversationRequest",
            "body": {"personaId": 1, "input": {"text": text}, "variables": {}, "optionalArgs": {}},
        }
    )


async def host(
    index: int, control_url: str, token: str, api: httpx.AsyncClient, api_base: str,
    session_id: str, deadline: float, tally: Tally,
) -> None:  # fmt: skip
    tag = f"h{index}"
    try:
        ws = await websockets.connect(
            f"{control_url}?access_token={token}", open_timeout=30, ping_interval=None
        )
    except (OSError, websockets.WebSocketException):
        tally.connect_errors += 1
        return
    async with ws:
        turn = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(random.uniform(1.0, 3.0))
            turn += 1
            command = turn % 5 == 0
            text = f"soak {tag} {turn}"
            started = time.perf_counter()
            if command:
                response = await api.post(
                    f"{api_base}/sessions/{session_id}/speak", json={"text": text}
                )
                if response.status_code != 202:
                    tally.commands_lost += 1
                    continue
            else:
                await ws.send(request(text))
            try:
                got = await asyncio.wait_for(
                    expect(ws, tag, text, "startSpeaking" if command else "conversationResponse"),
                    REPLY_TIMEOUT_SECONDS,
                )
            except (TimeoutError, websockets.ConnectionClosed):
                got = None
            if got is None:
                if command:
                    tally.commands_lost += 1
                else:
                    tally.turns_lost += 1
            elif got == "misrouted":
                tally.misrouted += 1
            else:
                tally.latencies.append((time.perf_counter() - started) * 1000)
                if command:
                    tally.commands_ok += 1
                else:
                    tally.turns_ok += 1


async def expect(ws: Any, tag: str, text: str, name: str) -> str:
    """Read until our reply; any soak line with another tag is a misrouting."""
    while True:
        message = json.loads(await ws.recv())
        if message.get("kind") == "request" and message.get("transaction") is not None:
            await ws.send(
                json.dumps(
                    {
                        "category": "scene",
                        "kind": "response",
                        "name": message["name"],
                        "transaction": message["transaction"],
                        "status": 0,
                        "body": {},
                    }
                )
            )
        if message.get("name") != name:
            continue
        body = message.get("body", {})
        said = (
            body.get("output", {}).get("text", "")
            if name == "conversationResponse"
            else body.get("text", "")
        )
        if "soak " not in said:
            continue
        if f"soak {tag} " not in said:
            return "misrouted"
        if said.endswith(text):
            return "ok"


async def run(
    hosts: int, seconds: float, instances: int, warmup: float, transcript_turns: int
) -> int:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    api_key = secrets.token_urlsafe(32)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JWT_PUBLIC_KEY": "soak-key",
        "JWT_PRIVATE_KEY": secrets.token_urlsafe(48),
        "ORCHESTRATOR_API_KEY": api_key,
        "LOG_LEVEL": "warning",
        "TOKEN_RATE_LIMIT": "10000000/second",
        # Transcripts fill up to their bound during warm-up, so what the
        # end-of-run RSS shows is growth beyond every bounded structure.
        "TRANSCRIPT_TURNS": str(transcript_turns),
    }
    with contextlib.ExitStack() as stack:
        if instances == 2:
            env["REDIS_URL"] = stack.enter_context(
                redis(stack.enter_context(tempfile.TemporaryDirectory()))
            )
        bases = [stack.enter_context(server(env, with_pid=True)) for _ in range(instances)]
        socket_base, socket_pid = bases[0]
        api_base = bases[-1][0]
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(
            timeout=30, limits=limits, headers={"Authorization": f"Bearer {api_key}"}
        ) as api:
            issued = []
            for _ in range(hosts):
                issued.append((await api.get(f"{socket_base}/api/jwt")).json())
            control_url = socket_base.replace("http://", "ws://") + "/ws"
            deadline = time.monotonic() + seconds
            tally = Tally()
            tasks = []
            for index, token in enumerate(issued):
                session_id = token["session_id"]
                play = host(
                    index, control_url, token["jwt"], api, api_base, session_id, deadline, tally
                )
                tasks.append(asyncio.create_task(play))
                if index % 50 == 49:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(min(warmup, seconds / 3))
            rss_warm = rss_kib(socket_pid)
            await asyncio.gather(*tasks)
            rss_end = rss_kib(socket_pid)
    latencies = sorted(tally.latencies) or [float("nan")]
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    growth = (rss_end - rss_warm) / rss_warm * 100 if rss_warm else float("nan")
    print(
        f"soak: {hosts} hosts, {seconds:.0f} s, {instances} instance(s), "
        f"TRANSCRIPT_TURNS={transcript_turns}; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(
        f"turns ok={tally.turns_ok} lost={tally.turns_lost}; api commands ok={tally.commands_ok} "
        f"lost={tally.commands_lost}; misrouted={tally.misrouted}; "
        f"connect errors={tally.connect_errors}"
    )
    print(f"reply latency p50={statistics.median(latencies):.1f} ms p99={p99:.1f} ms")
    print(
        f"server RSS after warm-up {rss_warm / 1024:.1f} MiB, "
        f"at end {rss_end / 1024:.1f} MiB ({growth:+.1f}%)"
    )
    failed = tally.turns_lost + tally.commands_lost + tally.misrouted + tally.connect_errors
    print(
        "RESULT: "
        + ("PASS (nothing lost or misrouted)" if failed == 0 else f"FAIL ({failed} problems)")
    )
    return 0 if failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--instances", type=int, choices=(1, 2), default=1)
    parser.add_argument("--warmup", type=float, default=40)
    parser.add_argument("--transcript-turns", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="tiny run (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        return asyncio.run(run(10, 8, args.instances, 2, args.transcript_turns))
    return asyncio.run(
        run(args.hosts, args.seconds, args.instances, args.warmup, args.transcript_turns)
    )


if __name__ == "__main__":
    raise SystemExit(main())
