"""Reconnect storm: N live sessions lose their server; time until every host is back and answered.

Each simulated video host has its own token (its own session), opens the
control socket its token names (``<sm-control>?access_token=<token>``) and
takes one turn (a tagged ``conversationRequest`` echoed back by the default
handler). Half a second after the last answer (so every answered turn has
been saved), the server goes away under them:

- ``restart``: one instance with embedded defaults (memory store, no Redis)
  is stopped gracefully (SIGTERM: uvicorn closes every socket with 1012) and
  started again on the same port with the same signing key;
- ``failover``: two instances share Redis and the key, the hosts are split
  across both, and one is killed with SIGKILL (its sockets drop with no close
  frame). Each host knows both URLs and tries the other one first, as a load
  balancer dropping the dead backend would send it.

Every dropped host reconnects with its same token and takes one more turn,
retrying with capped exponential backoff and full jitter: before attempt n it
waits uniform(0, min(2 s, 0.25 s x 2^(n-1))), so the herd spreads instead of
hammering the port in lockstep. A host not back within ``--deadline`` seconds
is lost. Figures: time from the kill until the last host is back and
answered, per-host p50/p99, refused attempts by kind, the drop's close codes,
and what the sessions API holds afterwards (the pre-kill turn must survive
with Redis; the memory store starts empty, so after a restart the record is
re-created from the token). The reference, measured in the same run, is the
cold storm: the same hosts connecting for the first time to a running server.

Exit status 1 when a host or (with Redis) a transcript is lost.

    python3 bench/reconnect_storm.py                    # ~1 min: 1000 hosts, both scenarios
    python3 bench/reconnect_storm.py --quick            # 20 hosts, for smoke tests
    python3 bench/reconnect_storm.py --scenario failover --hosts 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
import websockets

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cross_instance import percentile, redis, server  # noqa: E402
from bench.soak import REPLY_TIMEOUT_SECONDS, expect, request  # noqa: E402
from bench.token_endpoint import BenchError, free_loopback_port, machine  # noqa: E402
from bench.wsload_tokens import control_url, fetch_tokens, raise_fd_limit  # noqa: E402
from orchestrator.backend.registry import LIVE_PREFIX, parse_holder  # noqa: E402

BACKOFF_FIRST_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 2.0
OPEN_TIMEOUT_SECONDS = 10.0
# Between the last cold answer and the kill. A turn's record is saved just after
# its reply is sent, so a kill within that save's round trip loses the turn from
# the store (tests/orchestrator/control/test_faults.py); this measures reconnection.
SETTLE_SECONDS = 0.5


@dataclass
class Host:
    """One simulated video host: its token, its session and where it may connect."""

    tag: str
    session_id: str
    urls: list[str]  # the token's own sm-control first, then the other instance's
    ws: Any = None
    at: int = 0  # index in ``urls`` of its socket


@dataclass
class Storm:
    """One storm: when each host was back and answered, refused attempts and drops by kind."""

    started: float = field(default_factory=time.monotonic)
    back: list[float] = field(default_factory=list)  # seconds from ``started``, per host
    refused: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)

    def figures(self, expected: int) -> str:
        back = sorted(self.back)
        if not back:
            return f"back 0/{expected}"
        return (
            f"back {len(back)}/{expected} in {back[-1]:.2f} s "
            f"(per host p50 {percentile(back, 0.5):.2f} s, p99 {percentile(back, 0.99):.2f} s)"
        )


def refusal(exc: BaseException) -> str:
    """A failed attempt by kind: the handshake's HTTP status and error code, a close code..."""
    if isinstance(exc, websockets.InvalidStatus):
        code = ""
        with contextlib.suppress(ValueError, AttributeError):
            code = " " + json.loads(exc.response.body or b"{}").get("error", "")
        return f"HTTP {exc.response.status_code}{code}"
    if isinstance(exc, websockets.ConnectionClosed):
        return f"closed {exc.rcvd.code if exc.rcvd else 1006} mid-turn"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return type(exc).__name__


async def take_turn(ws: Any, host: Host, turn: int) -> None:
    """Say ``soak <tag> <turn>`` and wait for its echo (raises if it never comes)."""
    text = f"soak {host.tag} {turn}"
    await ws.send(request(text))
    got = await asyncio.wait_for(
        expect(ws, host.tag, text, "conversationResponse"), REPLY_TIMEOUT_SECONDS
    )
    if got != "ok":
        raise RuntimeError("misrouted reply")


async def attempt(host: Host, index: int, turn: int, storm: Storm) -> bool:
    """Connect to ``host.urls[index]`` and take turn ``turn``; ``False`` (counted) if not."""
    ws = None
    try:
        ws = await websockets.connect(
            host.urls[index], open_timeout=OPEN_TIMEOUT_SECONDS, ping_interval=None
        )
        await take_turn(ws, host, turn)
    except (OSError, TimeoutError, RuntimeError, websockets.WebSocketException) as exc:
        storm.refused[refusal(exc)] += 1
        if ws is not None:
            await ws.close()
        return False
    host.ws, host.at = ws, index
    storm.back.append(time.monotonic() - storm.started)
    return True


async def until_back(host: Host, turn: int, storm: Storm, deadline: float) -> None:
    """Attempts until one answers or the deadline passes, rotating through the
    host's URLs (the one after its last socket's first) with full-jitter backoff."""
    reconnect = host.ws is not None
    first = host.at + 1 if reconnect else 0
    n = 0
    while time.monotonic() < deadline:
        n += 1
        if reconnect or n > 1:  # only a cold host's first attempt goes at once
            cap = min(BACKOFF_CAP_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (n - 1))
            await asyncio.sleep(random.uniform(0, cap))
        if await attempt(host, (first + n - 1) % len(host.urls), turn, storm):
            return


async def dropped_then_back(host: Host, storm: Storm, deadline: float) -> None:
    await host.ws.wait_closed()
    storm.closes[int(host.ws.close_code or 1006)] += 1
    await until_back(host, 2, storm, deadline)


async def still_answers(host: Host, storm: Storm) -> bool:
    """Turn 2 on a socket the kill did not touch."""
    try:
        await take_turn(host.ws, host, 2)
    except (OSError, TimeoutError, RuntimeError, websockets.WebSocketException) as exc:
        storm.refused[refusal(exc)] += 1
        return False
    return True


@dataclass
class Outcome:
    """A scenario's storms and what the sessions API held afterwards."""

    count: int
    cold: Storm
    warm: Storm
    dropped: int  # hosts whose instance was killed
    stopped: int  # untouched hosts that stopped answering
    found: int = 0  # session records the API found
    kept: int = 0  # ... holding the pre-kill turn

    @property
    def lost(self) -> int:
        return self.dropped - len(self.warm.back) + self.stopped


async def storms(
    hosts: list[Host], dead: str, kill: Callable[[], None], deadline_seconds: float
) -> Outcome:
    """The cold storm (the reference), then ``kill`` (in a thread) of the
    instance at ``dead`` (its ``ws://`` base) and the reconnect storm of the
    hosts it held; the others take turn 2 where they are."""
    cold = Storm()
    await asyncio.gather(*(until_back(h, 1, cold, cold.started + deadline_seconds) for h in hosts))
    if len(cold.back) < len(hosts):
        raise BenchError(f"only {len(cold.back)}/{len(hosts)} hosts connected cold: {cold.refused}")
    dropped = [h for h in hosts if h.urls[h.at].startswith(dead)]
    await asyncio.sleep(SETTLE_SECONDS)
    warm = Storm()  # the clock starts as the kill is sent
    deadline = warm.started + deadline_seconds
    back = asyncio.gather(*(dropped_then_back(h, warm, deadline) for h in dropped))
    await asyncio.to_thread(kill)
    await back
    others = [h for h in hosts if h not in dropped]
    answered = await asyncio.gather(*(still_answers(h, warm) for h in others))
    return Outcome(len(hosts), cold, warm, len(dropped), answered.count(False))


async def sessions_after(base: str, api_key: str, hosts: list[Host], outcome: Outcome) -> None:
    """Count the records ``GET /sessions/{id}`` finds, and those holding the pre-kill turn."""
    headers = {"Authorization": f"Bearer {api_key}"}
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(headers=headers, timeout=30, limits=limits) as api:
        answers = await asyncio.gather(*(api.get(f"{base}/sessions/{h.session_id}") for h in hosts))
    for host, answer in zip(hosts, answers, strict=True):
        if answer.status_code == 200:
            outcome.found += 1
            said = {t["text"] for t in answer.json()["transcript"] if t["role"] == "user"}
            outcome.kept += f"soak {host.tag} 1" in said


def make_hosts(bases: list[str], count: int) -> list[Host]:
    """``count`` tokens issued in turn by ``bases``; each host's URLs start with its own."""
    hosts: list[Host] = []
    for offset, base in enumerate(bases):
        share = count // len(bases) + (offset < count % len(bases))
        for issued in fetch_tokens(base, share):
            own = control_url(issued["jwt"])
            netloc = base.removeprefix("http://")
            others = [own.replace(netloc, b.removeprefix("http://"), 1) for b in bases if b != base]
            hosts.append(Host(f"h{len(hosts)}", issued["session_id"], [own, *others]))
    return hosts


def environment(api_key: str, **extra: str) -> dict[str, str]:
    """One deployment's environment: every instance gets the same key."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JWT_PUBLIC_KEY": "storm-key",
        "JWT_PRIVATE_KEY": secrets.token_urlsafe(48),
        "ORCHESTRATOR_API_KEY": api_key,
        "LOG_LEVEL": "warning",
        "TOKEN_RATE_LIMIT": "10000000/second",
        **extra,
    }


def ws_base(base: str) -> str:
    return base.replace("http://", "ws://", 1) + "/"


def report(name: str, outcome: Outcome, kill: str, after: str) -> None:
    cold, warm = outcome.cold, outcome.warm
    print(
        f"{name}: cold storm {cold.figures(outcome.count)}; {kill}; reconnect storm, from the "
        f"kill: {warm.figures(outcome.dropped)}; lost {outcome.lost}; drop closes "
        f"{dict(warm.closes.most_common())}; failed attempts {dict(warm.refused.most_common())}",
        flush=True,
    )
    print(f"  sessions after: {after}", flush=True)


async def close_all(hosts: list[Host]) -> None:
    await asyncio.gather(*(h.ws.close() for h in hosts if h.ws is not None))


async def restart(count: int, deadline: float) -> int:
    """One instance, memory store: SIGTERM, start again on the same port."""
    api_key = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory() as workdir, contextlib.ExitStack() as stack:
        # The default SQLite archive, in a throwaway directory.
        env = environment(api_key, ARCHIVE_URL=f"sqlite:///{workdir}/orchestrator.db")
        port = free_loopback_port()
        first = contextlib.ExitStack()
        stack.callback(first.close)
        base = first.enter_context(server(env, port=port))
        hosts = await asyncio.to_thread(make_hosts, [base], count)
        down: dict[str, float] = {}

        def kill() -> None:
            started = time.monotonic()
            first.close()  # SIGTERM, and wait for the exit
            down["exit"] = time.monotonic() - started
            stack.enter_context(server(env, port=port))  # returns once it listens
            down["listening"] = time.monotonic() - started

        outcome = await storms(hosts, ws_base(base), kill, deadline)
        await sessions_after(base, api_key, hosts, outcome)
        await close_all(hosts)
    report(
        f"restart ({count} hosts, 1 instance, memory store)", outcome,
        f"SIGTERM to exit {down['exit']:.2f} s, to listening again {down['listening']:.2f} s",
        f"{outcome.found}/{count} found (re-created from the token), pre-restart turn kept "
        f"in {outcome.kept} (the memory store starts empty)",
    )  # fmt: skip
    return outcome.lost + count - outcome.found


async def stale_entries(redis_url: str, dead_pid: int, hosts: list[Host]) -> tuple[int, int]:
    """(registry entries still naming the killed instance, sessions with no entry)."""
    client = aioredis.from_url(redis_url)
    try:
        values = await client.mget([LIVE_PREFIX + h.session_id for h in hosts])
    finally:
        await client.aclose()
    holders = [parse_holder(v) if v is not None else None for v in values]
    dead = f"{socket.gethostname()}-{dead_pid}-"  # cluster.new_instance_id()
    stale = sum(1 for h in holders if h is not None and h.instance.startswith(dead))
    return stale, holders.count(None)


async def failover(count: int, deadline: float) -> int:
    """Two instances on Redis, hosts split across both: SIGKILL one."""
    api_key = secrets.token_urlsafe(32)
    with (
        tempfile.TemporaryDirectory() as workdir,
        redis(workdir) as redis_url,
        contextlib.ExitStack() as stack,
    ):
        # Two processes cannot share the default SQLite archive; it is not under test here.
        env = environment(api_key, REDIS_URL=redis_url, ARCHIVE_URL="none")
        (a, a_pid), (b, _) = (stack.enter_context(server(env, with_pid=True)) for _ in "ab")
        hosts = await asyncio.to_thread(make_hosts, [a, b], count)

        def kill() -> None:
            os.kill(a_pid, signal.SIGKILL)

        outcome = await storms(hosts, ws_base(a), kill, deadline)
        await sessions_after(b, api_key, hosts, outcome)
        stale, unregistered = await stale_entries(redis_url, a_pid, hosts)
        await close_all(hosts)
    report(
        f"failover ({count} hosts, 2 instances + Redis)", outcome,
        f"SIGKILL to A holding {outcome.dropped}",
        f"{outcome.found}/{count} found on B, pre-kill turn kept in {outcome.kept}; live "
        f"registry: {stale} entries still naming A, {unregistered} sessions unregistered",
    )  # fmt: skip
    return outcome.lost + count - outcome.kept + stale + unregistered


async def run(scenarios: list[str], count: int, deadline: float) -> int:
    raise_fd_limit()
    print(
        f"reconnect storm on {machine()}; {count} hosts; backoff before attempt n: "
        f"uniform(0, min({BACKOFF_CAP_SECONDS:g}, {BACKOFF_FIRST_SECONDS:g} x 2^(n-1))) s; "
        f"deadline {deadline:g} s",
        flush=True,
    )
    problems = 0
    for name in scenarios:
        problems += await (restart if name == "restart" else failover)(count, deadline)
    print("RESULT: " + ("PASS (none lost)" if problems == 0 else f"FAIL ({problems} lost)"))
    return 0 if problems == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("restart", "failover", "both"), default="both")
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--deadline", type=float, default=60.0, help="seconds to be back")
    parser.add_argument("--quick", action="store_true", help="20 hosts (smoke test)")
    args = parser.parse_args(argv)
    if not 2 <= args.hosts <= 5000:
        parser.error("--hosts must be 2-5000")
    scenarios = ["restart", "failover"] if args.scenario == "both" else [args.scenario]
    try:
        return asyncio.run(run(scenarios, 20 if args.quick else args.hosts, args.deadline))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
