"""Real Celery workers for integration tests, on the test database and Redis."""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from kombu import Connection

from controlplane.celery import app

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """The URL of the test database for a process started here: on the server's host and
    port, or on its unix socket's directory (the embedded PostgreSQL)."""
    db = connection.settings_dict
    host = db["HOST"] or db["OPTIONS"].get("host", "")
    credentials = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    if host.startswith("/"):
        return f"postgres://{credentials}@/{db['NAME']}?host={quote(host, safe='/')}"
    return f"postgres://{credentials}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


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
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        **(env or {}),
    }
    if "CELERY_BROKER_URL" in (env or {}) and "CELERY_RESULT_BACKEND" not in env:
        environment["CELERY_RESULT_BACKEND"] = env["CELERY_BROKER_URL"]
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed after the worker
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
        # A file, not a pipe: a worker logging more than a pipe holds would block.
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        # Its own process group: a test may kill the worker and its children at once.
        start_new_session=True,
    )
    worker.log = log
    try:
        wait_for_worker(worker, name, broker=environment["CELERY_BROKER_URL"])
        yield worker
    finally:
        stop(worker)
        log.close()


def wait_for_worker(worker, name: str, *, broker: str, timeout: float = 30) -> None:
    """Return once the worker answers a ping on its broker; fail if it exits first."""
    # ``app.control`` publishes through the app's producer pool (its own broker) whatever
    # connection it is given, so a worker elsewhere is pinged by a mailbox of its own.
    with Connection(broker) as connection:
        mailbox = app.control.Mailbox("celery", type="fanout", accept=["json"])(connection)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                pytest.fail(f"worker exited: {output(worker)}")
            replies = mailbox._broadcast("ping", reply=True, timeout=0.5) or []
            if any(f"tests-{name}-{os.getpid()}@" in list(r)[0] for r in replies):
                return
        pytest.fail(f"the Celery worker did not answer within {timeout:.0f} s: {output(worker)}")


def output(process) -> str:
    """What a process started here has written so far."""
    process.log.flush()
    process.log.seek(0)
    return process.log.read()


def errors(process, width: int = 800) -> str:
    """The lines a process has logged at ERROR or CRITICAL so far, each cut to ``width``
    characters: what an assertion message shows of a long log (its tail may not hold
    the error that mattered)."""
    levels = ('"level": "ERROR"', '"level": "CRITICAL"', "ERROR/", "CRITICAL/")
    lines = output(process).splitlines()
    return "\n".join(line[:width] for line in lines if any(level in line for level in levels))


def stop(process, timeout: float = 15) -> None:
    """Ask a process to stop (SIGTERM), then kill its process group if it will not."""
    if process.poll() is None:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    kill_group(process)


def kill_group(process) -> None:
    """SIGKILL a process started in its own session, and every process of its group
    (a prefork worker's children), then reap it. Never once it is reaped: its group id
    could then name someone else's processes."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
