"""The morning-peak benchmark still runs, at its smallest size, within a minute."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.skips import requires_redis

ROOT = Path(__file__).resolve().parents[2]


@requires_redis
@pytest.mark.integration
@pytest.mark.slow
def test_peak_benchmark_quick():
    """bench/peak.py --quick starts the whole service, logs agents in through the IdP,
    drives joins at two rates and prints every figure, in under 60 s."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "bench/peak.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"logins through the IdP: \d+ in .* p99 \d+ ms; errors 0", out), out
    # offered/s, arrivals, joins/s, p50, p95, p99, 202s, errors
    row = r"^\s+([\d.]+)\s+(\d+)\s+([\d.]+)" + r"\s+(\d+)" * 5 + "$"
    rows = re.findall(row, out, re.M)
    assert [float(r[0]) for r in rows] == [2.0, 4.0], out
    assert all(int(r[1]) > 0 and float(r[2]) > 0 and int(r[7]) == 0 for r in rows), out
    assert "highest rate held (p99 < 1 s, no error):" in out
    assert re.search(r"CPU seconds during the joins .*gunicorn [\d.]+.*other work", out), out
    assert "tracebacks in the logs" not in out, out
    assert elapsed < 60, f"the quick run took {elapsed:.0f} s"
