"""A real Celery worker, started by the test against the Redis on 127.0.0.1:6379,
runs a task on the test database and its result is read back."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery.result import EagerResult
from django.conf import settings
from django.db import connection

from audit.actor import Actor
from audit.services import audit_record
from audit.tasks import audit_chain_verify_task
from controlplane.celery import app
from tests.conftest import requires_postgres, requires_redis
from tests.factories import MinistryFactory

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def celery_worker_process(transactional_db):
    """A worker process on the audit queue, pointed at the test database."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }
    app.control.purge()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "controlplane",
            "worker",
            "--pool",
            "solo",
            "--queues",
            "audit",
            "--hostname",
            f"tests-{os.getpid()}@%h",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                pytest.fail(f"worker exited: {worker.stdout.read()}")
            if app.control.ping(timeout=0.5):
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


@requires_postgres
@requires_redis
@pytest.mark.integration
def test_a_real_worker_runs_a_task_and_its_result_is_read_back(celery_worker_process):
    """The worker reads the events this test committed and reports the chain intact."""
    ministry = MinistryFactory()
    for i in range(3):
        audit_record(
            actor=Actor.system("tests"), action="test.worker", target=ministry, data={"i": i}
        )
    result = audit_chain_verify_task.delay()
    assert not isinstance(result, EagerResult), "the task must go through the broker"
    outcome = result.get(timeout=30)
    assert outcome == {"intact": True, "checked": 3, "broken_sequence": None, "reason": ""}
    assert result.status == "SUCCESS"
