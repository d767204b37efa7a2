"""A turn's and a handshake's own cost, with no sockets: the app driven through ASGI.

Builds the app as ``python -m bench.apps`` serves it (default handler, embedded
defaults, ``LOG_LEVEL=warning``, ``TOKEN_RATE_LIMIT`` it cannot hit), takes N
tokens from its ``GET /api/jwt``, then opens N control sockets at once through
the ASGI interface on uvloop, each taking R ``conversationRequest`` turns
(the server side of each socket is two queues: what uvicorn would hand the
app, and what the app sends). It reads the process's CPU time for that phase,
best of ``--repeats``; the same with no turns is the handshake and the close.
The same against ``/bench/echo-ws`` (one fixed reply per frame) is the
reference: what the server stack and the driver cost with no work.

    python3 bench/turn_cost.py                  # 200 sockets x 50 turns, best of 5
    python3 bench/turn_cost.py --instructions   # under valgrind: instructions a turn
    python3 bench/turn_cost.py --quick

``--instructions`` runs each phase under valgrind's callgrind (50 sockets, 0 and
40 turns) and prints instructions per turn and per socket: the count does not
drift with the machine's speed or with what else runs, so a change of a few
hundred nanoseconds a turn shows. The four runs take a minute or two each,
as many at once as there are CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.apps import ECHO_WS_PATH  # noqa: E402
from bench.token_endpoint import machine  # noqa: E402

CONTROL_PATH = "/ws"
TURN = json.dumps(
    {
        "category": "scene",
        "kind": "event",
        "name": "conversationRequest",
        "body": {"personaId": 1, "input": {"text": "hello there"}, "variables": {}},
    }
)
ENVIRONMENT = {
    "JWT_PUBLIC_KEY": "bench-key",
    "LOG_LEVEL": "warning",
    "TOKEN_RATE_LIMIT": "100000000/second",
    # The driver sends as fast as the app answers: past the default 50 frames a
    # second a socket would be closed as a flood.
    "CONTROL_MAX_FRAMES_PER_SECOND": "100000000",
}
_COLLECTED = re.compile(r"Collected : (\d+)")

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]


def scope(kind: str, path: str, query: bytes = b"") -> dict[str, Any]:
    """An ASGI scope as uvicorn with this project's WebSocket stack gives it."""
    extensions: dict[str, Any] = {}
    if kind == "websocket":
        extensions = {
            "websocket.http.response": {},
            "orchestrator.bounded_sends": {"timeout_seconds": 1.0},
        }
    return {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "ws" if kind == "websocket" else "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8080),
        "subprotocols": [],
        "state": {},
        "extensions": extensions,
    }


async def token(app: App) -> str:
    """A fresh token from ``GET /api/jwt`` (one token, one session)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope("http", "/api/jwt"), receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return str(json.loads(body)["jwt"])


async def socket(app: App, path: str, query: bytes, turns: int) -> None:
    """One socket: accepted, ``turns`` round trips, closed by the peer."""
    inbound: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbound: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbound.put_nowait({"type": "websocket.connect"})
    served = asyncio.create_task(app(scope("websocket", path, query), inbound.get, outbound.put))
    # An app that stops early says so here rather than leaving the driver waiting.
    served.add_done_callback(lambda _: outbound.put_nowait({"type": "app.finished"}))
    accepted = await outbound.get()
    if accepted["type"] != "websocket.accept":
        raise RuntimeError(f"{path}: not accepted: {accepted}")
    for _ in range(turns):
        inbound.put_nowait({"type": "websocket.receive", "text": TURN})
        while True:
            sent = await outbound.get()
            if sent["type"] in ("websocket.close", "app.finished"):
                raise RuntimeError(f"{path}: the app stopped answering: {sent}")
            if '"conversationResponse"' in sent.get("text", ""):
                break
    inbound.put_nowait({"type": "websocket.disconnect", "code": 1000})
    await served


async def phase(route: str, sockets: int, turns: int, repeats: int) -> float:
    """The least CPU seconds that ``sockets`` sockets of ``turns`` turns took."""
    os.environ.update(ENVIRONMENT, JWT_PRIVATE_KEY=os.urandom(32).hex())
    from bench.apps import configured_app

    app = configured_app()
    path = CONTROL_PATH if route == "control" else ECHO_WS_PATH
    best = float("inf")
    async with app.router.lifespan_context(app):
        for _ in range(repeats):
            queries = [b""] * sockets
            if route == "control":
                queries = [b"access_token=" + (await token(app)).encode() for _ in queries]
            started = time.process_time()
            await asyncio.gather(*(socket(app, path, query, turns) for query in queries))
            best = min(best, time.process_time() - started)
    return best


def run_phase(route: str, sockets: int, turns: int, repeats: int) -> float:
    import uvloop

    return uvloop.run(phase(route, sockets, turns, repeats))


def instructions(route: str, sockets: int, turns: int) -> int:
    """Instructions the whole process ran for one phase, under callgrind."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--phase",
        route,
        "--sockets",
        str(sockets),
        "--turns",
        str(turns),
        "--repeats",
        "1",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = _COLLECTED.search(result.stderr)
    if result.returncode != 0 or found is None:
        raise SystemExit(f"valgrind run failed:\n{result.stdout}{result.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sockets", type=int, default=200, help="N (200)")
    parser.add_argument("--turns", type=int, default=50, help="R per socket (50)")
    parser.add_argument("--repeats", type=int, default=5, help="best of (5)")
    parser.add_argument("--instructions", action="store_true", help="count under valgrind")
    parser.add_argument("--quick", action="store_true", help="5 sockets x 3 turns, best of 1")
    parser.add_argument("--phase", choices=("control", "echo"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase is not None:  # one phase, as --instructions runs it
        run_phase(args.phase, args.sockets, args.turns, args.repeats)
        return 0
    if args.quick:
        args.sockets, args.turns, args.repeats = 5, 3, 1
    print(f"turn cost on {machine()}: in-process ASGI on uvloop, no sockets")
    if args.instructions:
        if shutil.which("valgrind") is None:
            print("--instructions needs valgrind (apt-get install valgrind)")
            return 2
        sockets, turns = (2, 2) if args.quick else (50, 40)
        print(f"{sockets} sockets x 0 and {turns} turns, instructions (callgrind)")
        runs = [(route, count) for route in ("control", "echo") for count in (0, turns)]
        # Counts do not depend on what else runs: the four runs share the CPUs.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            found = pool.map(lambda run: instructions(run[0], sockets, run[1]), runs)
            counts = dict(zip(runs, found, strict=True))
        for route in ("control", "echo"):
            per_turn = (counts[route, turns] - counts[route, 0]) / (sockets * turns)
            print(f"  {route:8s} {per_turn:10,.0f} a turn")
        return 0
    print(f"{args.sockets} sockets x {args.turns} turns, CPU time, best of {args.repeats}")
    for route in ("control", "echo"):
        opened = run_phase(route, args.sockets, 0, args.repeats)
        conversed = run_phase(route, args.sockets, args.turns, args.repeats)
        per_turn = (conversed - opened) / (args.sockets * args.turns) if args.turns else 0.0
        print(
            f"  {route:8s} handshake and close {opened / args.sockets * 1e6:6.1f} µs a socket,"
            f" turn {per_turn * 1e6:6.1f} µs"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
