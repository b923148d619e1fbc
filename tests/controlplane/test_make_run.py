"""``make run`` without DATABASE_URL starts the embedded PostgreSQL and stops it when the
demo stops: Ctrl-C, SIGTERM to make's process group, or a failing step.

Each run gets a data directory and ports of its own (never the demo's var/postgres,
which this run of the suite may itself be using), and the environment a newcomer's
shell has: none of the test settings' variables.
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests

from devtools import embedded_postgres

ROOT = Path(__file__).resolve().parents[2]
# Taken as installed (the suite runs from them): make must not reinstall them.
INSTALLED = [".venv/.installed", "deploy/dev-idp/node_modules/.bin/node"]
TEST_VARIABLES = {
    "DEBUG",
    "SECRET_KEY",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "CACHE_URL",
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "STATICFILES_BACKEND",
    "DJANGO_SETTINGS_MODULE",
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_run(data_dir: Path, log: Path, **env) -> tuple[subprocess.Popen, int]:
    """Start ``make run`` in its own process group, as a terminal would; its port."""
    port = free_port()
    assume_old = [arg for path in INSTALLED for arg in ("-o", path)]
    process = subprocess.Popen(
        ["make", *assume_old, "run"]
        + [f"PORT={port}", f"IDP_PORT={free_port()}", f"PG_DATA={data_dir}"],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k not in TEST_VARIABLES}, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, port


def answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def ended(process: subprocess.Popen, log: Path, timeout: float = 180) -> int:
    # Generous: once, on a 2-core machine loaded by a parallel full suite, the demo did
    # not end within 60 s after Ctrl-C (not reproduced since; cause not found).
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail(f"make run did not end within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def data_dir(tmp_path):
    directory = tmp_path / "pg"
    yield directory
    embedded_postgres.server_stop(data_dir=directory)  # whatever the test left running


def test_a_failing_step_stops_the_embedded_postgres_it_started(data_dir, tmp_path):
    """The server is started, then migrate fails (a broken setting): make fails, and the
    server it started is stopped."""
    log = tmp_path / "make.log"
    process, _ = make_run(data_dir, log, DATABASE_CONN_MAX_AGE="not-a-number")
    assert ended(process, log) != 0
    output = log.read_text()
    assert "embedded PostgreSQL started" in output, output[-3000:]
    assert "embedded PostgreSQL stopped" in output, output[-3000:]
    assert embedded_postgres.running_pid(data_dir) is None


@pytest.mark.slow
def test_the_demo_stopped_by_ctrl_c_or_sigterm_stops_its_postgres_and_a_second_run_reuses_it(
    data_dir, tmp_path
):
    """A first run answers on /healthz; Ctrl-C (SIGINT to the group) ends the demo and its
    server. A second run reuses the data (no new initdb) and SIGTERM to the group stops
    everything again."""
    initialised = None
    for attempt, stop_signal in (("first", signal.SIGINT), ("second", signal.SIGTERM)):
        log = tmp_path / f"{attempt}.log"
        process, port = make_run(data_dir, log)
        deadline = time.monotonic() + 240
        while not answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                pytest.fail(f"{attempt} make run did not answer:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        pid = embedded_postgres.running_pid(data_dir)
        assert pid is not None
        version_file = (data_dir / "PG_VERSION").stat()
        if initialised is None:
            initialised = version_file.st_mtime_ns
        assert version_file.st_mtime_ns == initialised  # the same cluster, not a new initdb

        os.killpg(process.pid, stop_signal)
        ended(process, log)
        assert gone(pid), f"{attempt}: the postmaster {pid} still runs"
        assert embedded_postgres.running_pid(data_dir) is None
        assert not answers(port)
        assert "embedded PostgreSQL stopped" in log.read_text()
