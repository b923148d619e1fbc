"""The login benchmark still runs, at its smallest size."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.skips import requires_redis

ROOT = Path(__file__).resolve().parents[2]


@requires_redis
@pytest.mark.integration
def test_login_benchmark_smallest_size():
    """bench/login.py completes real logins through gunicorn and prints its figures."""
    result = subprocess.run(
        [sys.executable, "bench/login.py", "--logins", "4", "--concurrency", "2", "--workers", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "logins: 4 at concurrency 2" in result.stdout
    assert "logins per second:" in result.stdout
    assert "service share of end-to-end:" in result.stdout
