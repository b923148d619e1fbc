"""PostgreSQL restarts under the running service (gunicorn, as in production).

The service runs as separate processes against a private PostgreSQL cluster
(tests/reliability/private_postgres.py) that the test stops and starts again; the
shared PostgreSQL on 5432 is never touched.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings

from tests.reliability.private_postgres import (
    free_port,
    private_cluster_create,
    private_cluster_destroy,
)
from tests.support.skips import requires_redis

ROOT = Path(__file__).resolve().parents[2]

SEED = """
import json
from django.test import Client
from accounts.models import Role
from tests.factories import AgentFactory, MinistryFactory, RoomFactory, api_token_issued, grant

ministry = MinistryFactory(code="restart")
admin = grant(AgentFactory(ministry=ministry), Role.MINISTRY_ADMIN, ministry)
agent = AgentFactory(ministry=ministry)
RoomFactory(slug="abc-defg-hij", name="Point du lundi", owner=agent)
_, token = api_token_issued(admin, ministry, "auditor", name="outage")
client = Client()
client.force_login(agent)
print(json.dumps({"token": token, "session": client.cookies["sessionid"].value}))
"""


@dataclass
class Service:
    """The service's gunicorn (master and workers) and what a caller needs."""

    base: str
    token: str
    session: str
    process: subprocess.Popen
    log_path: Path

    def worker_pids(self) -> set[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(pid) for pid in children.read_text().split()}

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(f"{self.base}{path}", timeout=10, allow_redirects=False, **kwargs)

    def api_rooms(self) -> requests.Response:
        return self.get("/api/v1/rooms/", headers={"Authorization": f"Bearer {self.token}"})

    def console_home(self) -> requests.Response:
        return self.get("/console/", cookies={"sessionid": self.session})

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def private_postgres():
    cluster = private_cluster_create()
    try:
        yield cluster
    finally:
        private_cluster_destroy(cluster)


@pytest.fixture(scope="module")
def service(private_postgres):
    """Migrate the private cluster, seed an agent, a room and an API token, then run
    gunicorn (2 sync workers, DEBUG off, persistent connections) against it."""
    with psycopg.connect(private_postgres.url().replace("postgres://", "postgresql://")) as conn:
        conn.autocommit = True
        conn.execute("CREATE DATABASE visio")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "DATABASE_URL": private_postgres.url("visio"),
        "DATABASE_CONN_MAX_AGE": "60",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "STATICFILES_BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage",
        "LOG_LEVEL": "WARNING",
    }
    for name in ("CACHE_URL", "OIDC_OP_DISCOVERY_URL"):
        env.pop(name, None)
    run = {"cwd": ROOT, "env": env, "check": True, "capture_output": True, "text": True}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], **run)
    shell = subprocess.run([sys.executable, "manage.py", "shell", "-c", SEED], **run)
    seeded = json.loads(shell.stdout.strip().splitlines()[-1])
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "controlplane.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--worker-class",
            "sync",
            "--timeout",
            "30",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    service = Service(
        f"http://127.0.0.1:{port}", seeded["token"], seeded["session"], process, Path(log.name)
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if service.get("/healthz").status_code == 200 and len(service.worker_pids()) == 2:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"gunicorn did not start:\n{service.log()[-3000:]}")
            time.sleep(0.2)
        yield service
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        os.unlink(log.name)


@requires_redis  # /readyz checks the broker too
def test_postgres_restart_is_survived(private_postgres, service):
    """PostgreSQL restarted: /readyz reports it, requests fail cleanly, and the service
    recovers without a restart of its own processes."""
    master, workers = service.process.pid, service.worker_pids()
    assert service.get("/readyz").status_code == 200, service.get("/readyz").text
    # Every worker holds a persistent connection to the cluster before it goes.
    for _ in range(6):
        assert service.api_rooms().status_code == 200
        assert service.console_home().status_code == 200

    private_postgres.stop("fast")
    try:
        ready = service.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["database"]
        assert ready.json()["checks"]["broker"] == "ok"
        assert service.get("/healthz").status_code == 200, "liveness must not fail the pod"
        for _ in range(6):  # several times, so that both workers answer
            started = time.monotonic()
            api = service.api_rooms()
            assert api.status_code == 503, api.text[:500]
            assert api.headers["Content-Type"] == "application/json"
            assert api.json()["code"] == "service_unavailable"
            assert api.headers["Retry-After"].isdigit()
            page = service.console_home()
            assert page.status_code == 503, page.text[:500]
            assert page.headers["Content-Type"].startswith("text/html")
            assert "Service momentanément indisponible" in page.text
            assert 'id="retry"' in page.text
            assert page.headers["Retry-After"].isdigit()
            assert "Traceback" not in api.text + page.text
            assert time.monotonic() - started < 5, "a refused request must not hang"
    finally:
        private_postgres.start()

    restarted = time.monotonic()
    while service.get("/readyz").status_code != 200:
        assert time.monotonic() - restarted < 10, "not ready 10 s after PostgreSQL came back"
        time.sleep(0.1)
    for _ in range(6):
        assert service.api_rooms().status_code == 200
        home = service.console_home()
        assert home.status_code == 200
        assert "Se déconnecter" in home.text  # the same session, still logged in
    assert service.process.poll() is None and service.process.pid == master
    assert service.worker_pids() == workers, "gunicorn workers were restarted"
    log = service.log()
    assert "database unavailable" in log
    assert "Traceback" not in log and "Internal Server Error" not in log, log[-3000:]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "patched", "content_type"),
    [
        ("/scim/v2/Users", "scim.tokens.directory_token_authenticate", "application/scim+json"),
        ("/hooks/livekit/", "rooms.webhooks.webhook_authenticate", "application/json"),
    ],
    ids=["scim", "webhook"],
)
def test_database_outage_answers_machines_in_their_format(
    client, monkeypatch, caplog, path, patched, content_type
):
    """PostgreSQL restarted: requests fail cleanly, also for machines: a directory gets
    a SCIM error, a media node's webhook a 503 that LiveKit retries."""
    from django.db import OperationalError

    def unreachable(*args, **kwargs):
        raise OperationalError("connection to server failed: Connection refused")

    module, name = patched.rsplit(".", 1)
    monkeypatch.setattr(module + "." + name, unreachable)
    client.raise_request_exception = False
    method = client.get if path.startswith("/scim/") else client.post
    response = method(path, HTTP_AUTHORIZATION="Bearer x", content_type="application/json")
    assert response.status_code == 503
    assert response["Content-Type"] == content_type
    assert response["Retry-After"].isdigit()
    body = json.loads(response.content)
    if path.startswith("/scim/"):
        assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert body["status"] == "503"
    assert "Connection refused" not in response.content.decode()
    # Logged once, as an outage (one warning naming the error's class), never as a 500.
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in lines if "database unavailable" in r.getMessage()] == [
        f"database unavailable: {'GET' if path.startswith('/scim/') else 'POST'} {path} "
        "answered 503 (OperationalError)"
    ]
    assert not [r for r in lines if r.levelno >= logging.ERROR]
