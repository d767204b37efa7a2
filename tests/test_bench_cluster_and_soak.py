"""The cross-instance and soak benchmarks keep working (tiny runs; no timing assertions)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.server


@pytest.mark.redis
def test_cross_instance_bench_runs_quick() -> None:
    """bench/cross_instance.py --quick starts Redis and two servers and prints both paths."""
    if shutil.which("redis-server") is None:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("REQUIRE_REDIS=1 but redis-server is not on PATH")
        pytest.skip("redis-server is not on PATH")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cross_instance.py"), "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "same instance (reference)" in result.stdout
    assert "A -> Redis -> B" in result.stdout


def test_soak_bench_runs_quick_and_loses_nothing() -> None:
    """bench/soak.py --quick runs hosts with turns and API commands and reports PASS."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RESULT: PASS" in result.stdout
    assert "misrouted=0" in result.stdout
