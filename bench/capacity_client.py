"""One load-client process of ``bench/capacity.py``: sessions that each take one turn per period.

``python bench/capacity_client.py TARGET SOURCE PERIOD`` holds control
sockets to TARGET from the loopback address SOURCE. TARGET is either the
project's ``http://`` base (each session gets its own token from
``GET /api/jwt``, fetched before it connects, and opens
``<sm-control>?access_token=``) or a ``ws://`` URL every session connects to
as is (the vendor sample, which checks no token): the same client code for
both. Each session sends wsload's ``conversationRequest`` and times it to the
``conversationResponse``, once per PERIOD seconds, and answers the server's
requests as a DP's session server would. Session ``i`` turns at
``epoch + frac(i * golden ratio) * PERIOD + k * PERIOD``, so any prefix of the
sessions is spread evenly over the period: adding sessions, or closing the
newest, keeps the load smooth.

A session that falls a whole period behind (its reply took longer than the
period) skips the missed turns and counts them; a session whose socket fails
or whose reply times out counts an error and ends. Commands on stdin, one
answer line each on stdout:

- ``SET n``: open sessions up to ``n`` (at most ``CONNECT_RATE`` per second,
  not a connect storm) or close the newest down to ``n``; ``READY open errors``.
- ``MARK``: start a measurement window.
- ``REPORT``: ``WINDOW {json}`` with the window's latencies and send lags
  (ms), turns skipped, errors, the first error, and this process's CPU and
  wall seconds.
- ``QUIT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.idle_scale import REQUEST  # noqa: E402
from bench.wsload_tokens import fetch_socket_urls, raise_fd_limit  # noqa: E402

CONNECT_RATE = 1000.0  # new sessions per second
CONNECT_CONCURRENCY = 50
CLOSE_SECONDS = 5.0
REPLY_SECONDS = 10.0
GOLDEN = (math.sqrt(5) - 1) / 2


async def turn(ws: Any) -> float:
    """Seconds from ``conversationRequest`` to ``conversationResponse``; the server's
    requests (with a ``transaction``) are answered, as the DP's session server does."""
    started = time.perf_counter()
    await ws.send(REQUEST)
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), REPLY_SECONDS))
        latency = time.perf_counter() - started
        if message.get("kind") == "request" and message.get("transaction") is not None:
            await ws.send(answer(message))
        if message.get("name") == "conversationResponse":
            return latency


def answer(request: dict[str, Any]) -> str:
    return json.dumps(
        {
            "category": "scene",
            "kind": "response",
            "name": request.get("name"),
            "transaction": request["transaction"],
            "status": 0,
            "body": {},
        }
    )


class Load:
    """The sessions of this process and what they measured since the last MARK."""

    def __init__(self, target: str, source: str, period: float) -> None:
        self.target, self.source, self.period = target, source, period
        self.epoch = time.monotonic()
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.closing: set[asyncio.Task[Any]] = set()
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.skipped = 0
        self.errors = 0
        self.first_error = ""
        self.marked = (time.process_time(), time.monotonic())

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        self.first_error = self.first_error or repr(exc)

    async def resize(self, count: int) -> str:
        """Session indices stay ``0..count-1``: ended sessions are replaced, the newest close."""
        self.tasks = {i: task for i, task in self.tasks.items() if not task.done()}
        if len(self.tasks) > count:
            doomed = [self.tasks.pop(i) for i in sorted(self.tasks)[count:]]
            await self.close(doomed)
        elif len(self.tasks) < count:
            free = [i for i in range(count) if i not in self.tasks]
            await self.grow(free[: count - len(self.tasks)])
        live = sum(not task.done() for task in self.tasks.values())
        return f"READY {live} {self.errors}"

    async def close(self, doomed: list[asyncio.Task[None]]) -> None:
        """Cancel, and mark closing too: 3.11's ``wait_for`` can swallow a cancel."""
        self.closing.update(doomed)
        for task in doomed:
            task.cancel()
        _, pending = await asyncio.wait(doomed, timeout=CLOSE_SECONDS)
        for task in pending:
            task.cancel()
        if pending:
            print(f"{len(pending)} sessions did not close in time", file=sys.stderr, flush=True)
        self.closing = {task for task in self.closing if not task.done()}

    async def grow(self, indices: list[int]) -> None:
        if self.target.startswith("http"):
            loop = asyncio.get_running_loop()
            urls = await loop.run_in_executor(None, fetch_socket_urls, self.target, len(indices))
        else:
            urls = [self.target] * len(indices)
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        opened: list[asyncio.Future[None]] = []
        started = time.monotonic()
        for offset, (index, url) in enumerate(zip(indices, urls, strict=True)):
            delay = started + offset / CONNECT_RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await gate.acquire()
            connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            opened.append(connected)
            self.tasks[index] = asyncio.create_task(self.session(index, url, connected, gate))
        await asyncio.gather(*opened, return_exceptions=True)

    async def session(
        self, index: int, url: str, connected: asyncio.Future[None], gate: asyncio.Semaphore
    ) -> None:
        import websockets

        try:
            ws = await websockets.connect(
                url,
                ping_interval=None,
                open_timeout=30,
                close_timeout=2,
                local_addr=(self.source, 0),
            )
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            self.fail(exc)
            return
        finally:
            gate.release()
            connected.set_result(None)
        try:
            await self.turns(index, ws)
        except (OSError, TimeoutError, websockets.WebSocketException) as exc:
            self.fail(exc)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(ws.close())

    async def turns(self, index: int, ws: Any) -> None:
        period = self.period
        phase = (index * GOLDEN) % 1.0 * period
        due = (
            self.epoch
            + phase
            + math.ceil((time.monotonic() - self.epoch - phase) / period) * period
        )
        while True:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.lags.append(time.monotonic() - due)
            self.latencies.append(await turn(ws))
            due += period
            behind = math.floor((time.monotonic() - due) / period)
            if behind > 0:
                self.skipped += behind
                due += behind * period

    def mark(self) -> None:
        self.latencies, self.lags = [], []
        self.skipped = self.errors = 0
        self.first_error = ""
        self.marked = (time.process_time(), time.monotonic())

    def report(self) -> str:
        cpu, wall = time.process_time() - self.marked[0], time.monotonic() - self.marked[1]
        window = {
            "latencies_ms": [round(x * 1000, 3) for x in self.latencies],
            "lags_ms": [round(x * 1000, 3) for x in self.lags],
            "skipped": self.skipped,
            "errors": self.errors,
            "first_error": self.first_error,
            "cpu_s": cpu,
            "wall_s": wall,
        }
        return "WINDOW " + json.dumps(window, separators=(",", ":"))


async def serve(target: str, source: str, period: float) -> None:
    load = Load(target, source, period)
    loop = asyncio.get_running_loop()
    try:
        while True:
            words = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not words or words[0] == "QUIT":
                break
            if words[0] == "SET":
                reply = await load.resize(int(words[1]))
                # The sessions now live until the next SET: out of the collector's
                # full passes, which would stall this loop and read as latency.
                gc.collect()
                gc.freeze()
            elif words[0] == "MARK":
                load.mark()
                reply = "MARKED"
            elif words[0] == "REPORT":
                reply = load.report()
            else:
                reply = f"UNKNOWN {words[0]}"
            print(reply, flush=True)
    finally:
        await load.resize(0)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    raise_fd_limit()
    asyncio.run(serve(argv[0], argv[1], float(argv[2])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
