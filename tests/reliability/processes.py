"""Real processes for fault tests: a private Redis that a test may kill and restart
(the machine's shared Redis is never touched), the web app under gunicorn, Celery
beat, and helpers to wait on conditions with a deadline."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
import requests
from django.conf import settings
from django.test import Client

from tests.workers import ROOT, database_url, kill_group, output, stop

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def wait_for(condition, timeout: float = 60, every: float = 0.1) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_logged(command, *, env=None, cwd=None) -> subprocess.Popen:
    """Start ``command`` in a session of its own, its output kept in ``process.log``."""
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by ``stop_logged``
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    process.log = log
    return process


def stop_logged(process: subprocess.Popen) -> None:
    """Stop a process ``start_logged`` started, and close its log."""
    stop(process)
    process.log.close()


class PrivateRedis:
    """A redis-server of this test's own, on a free port, without persistence: killing
    it loses everything, as a restart of an unpersisted production Redis would."""

    def __init__(self):
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> PrivateRedis:
        command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--dir", tempfile.gettempdir()]
        self.process = start_logged(command)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        if not wait_for(lambda: self._answers(client), timeout=15, every=0.05):
            pytest.fail(f"the private redis-server did not start: {output(self.process)}")
        return self

    @staticmethod
    def _answers(client) -> bool:
        try:
            return client.ping()
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """SIGKILL: connections drop at once, and every key is gone."""
        if self.process is not None:
            kill_group(self.process)
            self.process.log.close()
            self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()


def app_environment(env: dict) -> dict:
    """The environment of a process of the app on the test database."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "LOG_LEVEL": "WARNING",
        **env,
    }


class WebServer:
    """The app under gunicorn, started; ``wait`` returns once it answers."""

    def __init__(self, process: subprocess.Popen, base: str):
        self.process, self.base = process, base

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"gunicorn exited: {output(self.process)}")
        try:
            return requests.get(f"{self.base}/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def wait(self, timeout: float = 30) -> str:
        if not wait_for(self._answers, timeout=timeout):
            pytest.fail(f"gunicorn did not answer within {timeout:.0f} s: {output(self.process)}")
        return self.base


@contextmanager
def web_server(env: dict):
    """The app under gunicorn (threads, as in production), starting: call ``wait()``
    (other processes may start meanwhile)."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "controlplane.wsgi", "--bind"]
    command += [f"127.0.0.1:{port}", "--workers", "1", "--threads", "16", "--timeout", "120"]
    process = start_logged(command, env=app_environment(env), cwd=ROOT)
    try:
        yield WebServer(process, f"http://127.0.0.1:{port}")
    finally:
        stop_logged(process)


@contextmanager
def celery_beat(env: dict, folder: Path, loglevel: str = "WARNING"):
    """Celery beat with the project's schedule (its state file in ``folder``); at
    ``loglevel="INFO"`` it logs every task it sends."""
    command = [sys.executable, "-m", "celery", "-A", "controlplane", "beat"]
    command += ["--schedule", str(folder / "beat-schedule"), "--loglevel", loglevel]
    process = start_logged(command, env=app_environment(env), cwd=ROOT)
    try:
        yield process
    finally:
        stop_logged(process)


def agent_session(agent, language: str = "en") -> requests.Session:
    """An HTTP session logged in as ``agent`` (a database session, as the console's),
    with the CSRF cookie and header an unsafe API call needs."""
    client = Client()
    client.force_login(agent)
    csrf = secrets.token_hex(16)  # a 32-character secret, accepted as such
    cookies = {
        settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value,
        settings.CSRF_COOKIE_NAME: csrf,
    }
    session = requests.Session()
    session.headers.update(
        {
            "Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items()),
            "X-CSRFToken": csrf,
            "Accept-Language": language,
        }
    )
    return session
