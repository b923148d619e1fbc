"""The SCIM first-sync benchmark still runs, at its smallest size."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.skips import requires_redis

ROOT = Path(__file__).resolve().parents[2]


@requires_redis
@pytest.mark.integration
def test_scim_sync_benchmark_smallest_size():
    """bench/scim_sync.py provisions users through gunicorn (probe, then create), counts
    the queries of a create, imports the same rows by CSV and prints every figure."""
    result = subprocess.run(
        [
            sys.executable,
            "bench/scim_sync.py",
            "--size",
            "20",
            "--clients",
            "2",
            "--workers",
            "1",
            "--body",
            "plain",
            "--database",
            "bench_scim_test",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for label in (
        "SCIM first sync: 20 users, 2 clients",
        "users per second:",
        "probe  latency p50",
        "create latency p50",
        "throttled (429):",
        "queries in-process: probe",
        "PostgreSQL per user (probe + create): transactions",
        "CSV import of the same rows:",
        "SCIM / CSV import:",
    ):
        assert label in result.stdout, result.stdout
