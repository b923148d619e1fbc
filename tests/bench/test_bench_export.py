"""The export benchmark still runs, at a small size."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_export_benchmark_small_size():
    """bench/export.py fills sessions with COPY, exports them, and prints the ratios."""
    result = subprocess.run(
        # Its own database: never the one a full-size run may be filling.
        [
            sys.executable,
            "bench/export.py",
            "--sessions",
            "2000",
            "--database",
            "bench_export_test",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for label in ("CSV export ", "COPY TO STDOUT ", "export / COPY:", "GROUP BY ", "roll-up"):
        assert label in result.stdout, result.stdout
