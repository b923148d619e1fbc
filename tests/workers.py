"""Real Celery workers for integration tests, on the test database and Redis."""

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from controlplane.celery import app

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def celery_worker(
    *,
    queues: str,
    concurrency: int = 4,
    pool: str = "prefork",
    name="w",
    env=None,
    loglevel: str = "WARNING",
):
    """Start a worker process on ``queues`` pointed at the test database; stop it after.
    Its output goes to a pipe read only at the end: keep ``loglevel`` quiet unless the
    test reads it."""
    db = connection.settings_dict
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        **(env or {}),
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "controlplane",
            "worker",
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--queues",
            queues,
            "--hostname",
            f"tests-{name}-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            loglevel,
        ],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                pytest.fail(f"worker exited: {worker.stdout.read()}")
            replies = app.control.ping(timeout=0.5) or []
            if any(f"tests-{name}-{os.getpid()}@" in list(r)[0] for r in replies):
                break
        else:
            pytest.fail("the Celery worker did not answer within 30 s")
        yield worker
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
