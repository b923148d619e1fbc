"""A real Celery worker, started by the test against the Redis on 127.0.0.1:6379,
runs a task on the test database and its result is read back."""

from pathlib import Path

import pytest
from celery.result import EagerResult

from audit.actor import Actor
from audit.services import audit_record
from audit.tasks import audit_chain_verify_task
from controlplane.celery import app
from tests.factories import MinistryFactory
from tests.support.skips import requires_redis
from tests.workers import celery_worker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def celery_worker_process(transactional_db):
    """A worker process on the audit queue, pointed at the test database."""
    app.control.purge()
    with celery_worker(queues="audit", pool="solo", concurrency=1, name="audit") as worker:
        yield worker


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
