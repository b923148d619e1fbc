"""The allocation benchmark still runs, at its smallest size."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.skips import requires_redis

ROOT = Path(__file__).resolve().parents[2]


@requires_redis
@pytest.mark.integration
@pytest.mark.slow
def test_allocation_benchmark_small_size():
    result = subprocess.run(
        [
            sys.executable,
            "bench/allocation.py",
            "--rooms",
            "100",
            "--spread-rooms",
            "50",
            "--failover-rooms",
            "30",
            "--pgbench-seconds",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for label in ("pgbench one-row UPDATE", "against pgbench's best", "max/mean", "detected in"):
        assert label in result.stdout
    assert "overbooked nodes 0" in result.stdout and "0 left on the dead node" in result.stdout
