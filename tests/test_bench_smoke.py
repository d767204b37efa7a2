"""The bench/ scripts still run end to end at a tiny size (no timing assertions)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.bench


def _run(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def _run_ok(script: str, *args: str) -> str:
    """``_run`` that must exit 0; its standard output."""
    result = _run(script, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_token_mint_bench_runs() -> None:
    """bench/token_mint.py --quick exits 0 and prints the mint ratio against its floor."""
    result = _run("token_mint.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mint / sign floor:" in result.stdout


@pytest.mark.server
def test_token_endpoint_bench_runs() -> None:
    """bench/token_endpoint.py --quick starts the server, drives both routes with wrk, exits 0."""
    if shutil.which("wrk") is None and os.environ.get("REQUIRE_BENCH") != "1":
        pytest.skip("wrk is not installed (apt-get install wrk); REQUIRE_BENCH=1 makes this fail")
    result = _run("token_endpoint.py", "--no-install")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "/api/jwt req/s" in result.stdout


def _run_with_redis(script: str) -> str:
    """``script --quick``'s output, which must exit 0; skips without ``redis-server``
    (fails under ``REQUIRE_REDIS=1``)."""
    if shutil.which("redis-server") is None:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("REQUIRE_REDIS=1 but redis-server is not on PATH")
        pytest.skip("redis-server is not on PATH")
    result = _run(script, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


WSLOAD = ROOT.parent / "shared" / "bench" / "wsload.py"


def _run_with_wsload(script: str) -> subprocess.CompletedProcess[str]:
    """``_run``, skipped without the shared wsload.py (failed with REQUIRE_BENCH=1)."""
    if not WSLOAD.is_file() and os.environ.get("REQUIRE_BENCH") != "1":
        pytest.skip("the shared wsload.py is not next to the repository")
    result = _run(script)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.server
def test_conversation_bench_runs() -> None:
    """bench/conversation.py --quick: wsload on echo-ws and on authenticated control sockets."""
    result = _run_with_wsload("conversation.py")
    assert "control socket:  conns=5 rounds=3 ok=15 errors=0" in result.stdout
    assert "5 x 3" in result.stdout


@pytest.mark.server
def test_connect_storm_bench_runs() -> None:
    """bench/connect_storm.py --quick: both routes of one server, with each side's CPU."""
    result = _run_with_wsload("connect_storm.py")
    for target in ("control", "echo"):
        assert f"  {target} " in result.stdout
        assert "errors 0" in result.stdout
    assert "server cpu" in result.stdout and "client cpu" in result.stdout


def test_turn_cost_bench_runs() -> None:
    """bench/turn_cost.py --quick drives both routes through ASGI and prints their costs."""
    output = _run_ok("turn_cost.py")
    for route in ("control", "echo"):
        # At --quick size an echo turn's cost is within the noise of its handshake's, so
        # the difference the bench prints can come out a little below zero.
        assert re.search(
            rf"  {route} +handshake and close +[\d.]+ µs a socket, turn +-?[\d.]+ µs", output
        )


# About a minute on an idle 2-CPU machine; valgrind slows with every other process.
@pytest.mark.timeout(300)
def test_turn_cost_bench_counts_instructions_under_valgrind() -> None:
    """bench/turn_cost.py --quick --instructions: a count a turn for both routes."""
    if shutil.which("valgrind") is None and os.environ.get("REQUIRE_BENCH") != "1":
        pytest.skip("valgrind is not installed; REQUIRE_BENCH=1 makes this fail")
    result = _run("turn_cost.py", "--instructions", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for route in ("control", "echo"):
        assert re.search(rf"  {route} +[\d,]+ a turn", result.stdout)


@pytest.mark.server
def test_idle_scale_bench_runs() -> None:
    """bench/idle_scale.py --quick holds 50 authenticated sockets and times turns on one."""
    output = _run_ok("idle_scale.py")
    assert "opened 50 authenticated sockets" in output
    assert "per idle session:" in output


@pytest.mark.server
@pytest.mark.redis
def test_cross_instance_bench_runs_quick() -> None:
    """bench/cross_instance.py --quick starts Redis and two servers and prints both paths."""
    output = _run_with_redis("cross_instance.py")
    assert "same instance (reference)" in output
    assert "A -> Redis -> B" in output


@pytest.mark.server
def test_soak_bench_runs_quick_and_loses_nothing() -> None:
    """bench/soak.py --quick runs hosts with turns and API commands and reports PASS."""
    result = _run("soak.py", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RESULT: PASS" in result.stdout
    assert "misrouted=0" in result.stdout


def test_llm_first_speech_bench_runs() -> None:
    """bench/llm_first_speech.py --quick measures both speech modes against the fake LLM."""
    result = _run("llm_first_speech.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "| `final` |" in result.stdout
    assert "| `sentences` |" in result.stdout


def test_archive_bench_runs_quick() -> None:
    """bench/archive.py --quick writes through the archive writer and times filtered pages."""
    result = _run("archive.py", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "writes, SQLite:" in result.stdout
    if "PostgreSQL is not installed" not in result.stdout:
        assert "writes, PostgreSQL:" in result.stdout
        assert "worst p99:" in result.stdout


@pytest.mark.server
@pytest.mark.redis
def test_reconnect_storm_bench_runs_quick_and_loses_nobody() -> None:
    """bench/reconnect_storm.py --quick restarts one server and kills one of two; all come back."""
    output = _run_with_redis("reconnect_storm.py")
    for expected in ("restart (20 hosts", "failover (20 hosts", "RESULT: PASS"):
        assert expected in output


@pytest.mark.server
def test_capacity_bench_runs_quick() -> None:
    """bench/capacity.py --quick ramps 20 then 40 sessions turning once a second and reports."""
    output = _run_ok("capacity.py")
    assert "40 sessions:" in output
    assert "project: 40 sessions" in output


VENDOR_DIR = Path(os.environ.get("ANCHOR_BUILD", "/tmp/vendor-anchors")) / "orch"  # noqa: S108


@pytest.mark.server
def test_capacity_bench_runs_quick_against_the_vendor_sample() -> None:
    """With a built vendor sample, the same quick ramp runs against it and prints the ratio."""
    if shutil.which("node") is None or not (VENDOR_DIR / "dist" / "server.js").is_file():
        pytest.skip(f"no node or no vendor sample built at {VENDOR_DIR}")
    result = _run("capacity.py", "--vendor-dir", str(VENDOR_DIR))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "vendor: 40 sessions" in result.stdout
    assert "project / vendor:" in result.stdout


def test_capacity_ramp_doubles_while_steps_hold_then_bisects() -> None:
    """The next count: x growth up to the cap, then halfway between held and failed."""
    from bench.capacity_ramp import Plan, Step, next_count

    plan = Plan(4.0, 50.0, 1000, 2.0, 0.1, 1.0, 2.0, 100.0, 19_500, "fd limit", 2)

    def step(sessions: int, reason: str = "") -> Step:
        return Step(sessions, 1, 1.0, 1.0, 1.0, 1.0, 0, 0, "", None, [], reason, 0.0)

    assert next_count([step(1000)], plan) == 2000
    assert next_count([step(1000), step(16_000)], plan) == 19_500
    assert next_count([step(19_500)], plan) is None
    assert next_count([step(4000), step(8000, "p99 60 ms")], plan) == 6000
    assert next_count([step(4000), step(8000, "x"), step(6000, "x")], plan) == 5000
    assert next_count([step(4000), step(4400, "x")], plan) is None
    assert next_count([step(1000, "errors")], plan) == 500


def test_replay_bench_runs_quick() -> None:
    """bench/replay.py --quick archives sessions with the built-in handler and replays them
    through ``orchestrator replay``: every one comes back the same."""
    out = _run_ok("replay.py")
    assert "replay: 20 sessions, 200 turns in" in out
    assert "replay turns/s:" in out
