"""The import benchmark still runs, at a small size."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_import_benchmark_small_size():
    """bench/import_agents.py imports the same rows three ways and prints the ratios."""
    result = subprocess.run(
        [sys.executable, "bench/import_agents.py", "--rows", "500"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for label in ("ours ", "import-export ", "copy ", "ours / django-import-export:"):
        assert label in result.stdout
