"""The ramp of ``bench/capacity.py``: steps of N sessions, up to the largest count that holds.

Drives ``bench/capacity_client.py`` processes over their stdin/stdout (``SET``,
``MARK``, ``REPORT``), reads the server's CPU time from ``/proc/PID/stat``
around each window, and decides the next count: up by the growth factor
while steps hold, then bisection between the largest count that held and the
smallest that failed.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.capacity_client import CONNECT_RATE
from bench.idle_scale import read_line
from bench.token_endpoint import BenchError

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "bench" / "capacity_client.py"
BUSY_CLIENT = 0.9  # a client busier than this (of one core) may be the limit
REPLY_SECONDS = 60.0


@dataclass(frozen=True)
class Plan:
    period: float
    p99_ms: float
    start: int
    growth: float
    resolution: float
    warmup: float  # periods
    window: float  # periods
    budget: float  # seconds per target
    cap: int
    cap_reason: str
    clients: int


@dataclass(frozen=True)
class Target:
    url: str  # http:// base (tokens) or ws:// URL
    pid: int | None  # the server process, for its CPU use


@dataclass(frozen=True)
class Step:
    sessions: int
    turns: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    lag_p99_ms: float
    errors: int
    skipped: int
    first_error: str
    server_cpu: float | None  # share of one core
    client_cpus: list[float]
    reason: str  # empty when the step holds
    setup_s: float  # fetching tokens and opening (or closing) sockets up to this count

    @property
    def holds(self) -> bool:
        return not self.reason


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else math.nan


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (fields 14 and 15 of ``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Clients:
    """The client processes, each holding its share of the sessions."""

    def __init__(self, url: str, plan: Plan) -> None:
        self.processes: list[subprocess.Popen[str]] = []
        for i in range(plan.clients):
            command = [sys.executable, str(CLIENT), url, f"127.0.0.{2 + i}", str(plan.period)]
            self.processes.append(
                subprocess.Popen(
                    command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
            )

    def ask(self, commands: list[str], answer: str, timeout: float) -> list[str]:
        for process, command in zip(self.processes, commands, strict=True):
            assert process.stdin is not None
            process.stdin.write(command + "\n")
            process.stdin.flush()
        return [read_line(process, answer, timeout) for process in self.processes]

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.write("QUIT\n")
                process.stdin.close()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def measure(clients: Clients, target: Target, plan: Plan, sessions: int, added: int) -> Step:
    n = len(clients.processes)
    shares = [sessions // n + (1 if i < sessions % n else 0) for i in range(n)]
    timeout = REPLY_SECONDS + 3 * max(added, 0) / CONNECT_RATE
    asked = time.monotonic()
    ready = clients.ask([f"SET {share}" for share in shares], "READY", timeout)
    setup = time.monotonic() - asked
    live = sum(int(line.split()[1]) for line in ready)
    time.sleep(plan.warmup * plan.period)
    clients.ask(["MARK"] * n, "MARKED", REPLY_SECONDS)
    server_before = cpu_seconds(target.pid) if target.pid else None
    started = time.monotonic()
    time.sleep(plan.window * plan.period)
    windows: list[dict[str, Any]] = [
        json.loads(line.split(" ", 1)[1])
        for line in clients.ask(["REPORT"] * n, "WINDOW", REPLY_SECONDS)
    ]
    wall = time.monotonic() - started
    server_cpu = None
    if target.pid and server_before is not None:
        server_cpu = (cpu_seconds(target.pid) - server_before) / wall
    latencies = [x for w in windows for x in w["latencies_ms"]]
    lags = [x for w in windows for x in w["lags_ms"]]
    errors = sum(w["errors"] for w in windows)
    skipped = sum(w["skipped"] for w in windows)
    p99 = percentile(latencies, 0.99)
    reasons = []
    if live < sessions:
        reasons.append(f"{sessions - live} sessions did not connect")
    if errors:
        reasons.append(f"{errors} errors")
    if skipped:
        reasons.append(f"{skipped} turns skipped")
    if not latencies:
        reasons.append("no turns")
    elif p99 > plan.p99_ms:
        reasons.append(f"p99 {p99:.1f} ms")
    return Step(
        sessions=sessions,
        turns=len(latencies),
        p50_ms=percentile(latencies, 0.5),
        p99_ms=p99,
        max_ms=max(latencies, default=math.nan),
        lag_p99_ms=percentile(lags, 0.99),
        errors=errors,
        skipped=skipped,
        first_error=next((w["first_error"] for w in windows if w["first_error"]), ""),
        server_cpu=server_cpu,
        client_cpus=[w["cpu_s"] / w["wall_s"] for w in windows],
        reason=", ".join(reasons),
        setup_s=setup,
    )


def describe(step: Step, plan: Plan) -> str:
    server = "n/a" if step.server_cpu is None else f"{step.server_cpu:.0%}"
    client = "+".join(f"{c:.0%}" for c in step.client_cpus)
    text = (
        f"{step.sessions:>6} sessions: {step.turns / (plan.window * plan.period):>6.0f} turns/s, "
        f"p50 {step.p50_ms:.2f} p99 {step.p99_ms:.2f} max {step.max_ms:.1f} ms, "
        f"send lag p99 {step.lag_p99_ms:.1f} ms; CPU server {server}, client {client} "
        f"(set up in {step.setup_s:.1f} s)"
    )
    text += " -> holds" if step.holds else f" -> FAILS ({step.reason})"
    if any(c > BUSY_CLIENT for c in step.client_cpus):
        text += f"; a client was over {BUSY_CLIENT:.0%} busy: the client was the limit"
    if step.lag_p99_ms > plan.p99_ms / 2:
        text += "; the client sent late (send lag p99 over half the p99 limit): it was a limit"
    if step.first_error:
        text += f"; first error: {step.first_error}"
    return text


def next_count(steps: list[Step], plan: Plan) -> int | None:
    """Up by ``growth`` until a failure, then bisection; ``None`` when done."""
    low = max((s.sessions for s in steps if s.holds), default=0)
    high = min((s.sessions for s in steps if not s.holds), default=None)
    if high is None:
        return None if low >= plan.cap else min(plan.cap, math.ceil(low * plan.growth))
    if low == 0:
        return high // 2 or None
    if high - low <= max(1.0, plan.resolution * low):
        return None
    grain = 10 ** max(0, int(math.log10(high - low)) - 1)
    middle = round((low + high) / 2 / grain) * grain
    return middle if low < middle < high else None


def ramp(target: Target, plan: Plan) -> list[Step]:
    """The steps measured against ``target`` (printed as they finish)."""
    steps: list[Step] = []
    started = time.monotonic()
    clients = Clients(target.url, plan)
    try:
        count: int | None = min(plan.start, plan.cap)
        current = 0
        while count is not None:
            step = measure(clients, target, plan, count, count - current)
            current = count
            steps.append(step)
            print("  " + describe(step, plan), flush=True)
            count = next_count(steps, plan)
            spent = time.monotonic() - started
            if (
                count is not None
                and spent + (plan.warmup + plan.window) * plan.period > plan.budget
            ):
                print(f"  (the budget of {plan.budget:g} s is spent: stopping here)", flush=True)
                break
    finally:
        clients.close()
    if not steps:
        raise BenchError("no step was measured")
    return steps
