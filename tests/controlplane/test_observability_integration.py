"""A real Celery worker logs in JSON with the request id of the join that woke it, and
serves the placements its pool made on its own metrics port."""

import json
import socket
import time

import pytest
import requests
from django.test import Client

from media_nodes import queueing
from tests.factories import MediaNodeFactory, RoomFactory
from tests.support.metrics import parse, value
from tests.support.skips import requires_redis
from tests.workers import celery_worker
from tests.workers import output as worker_output

pytestmark = [requires_redis, pytest.mark.integration]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db(transaction=True)
def test_worker_carries_the_request_id_and_serves_its_metrics(world, settings, tmp_path):
    """The join's X-Request-ID is on the worker's lines for the placement it queued; the
    worker's port answers the pool's placement count (multiprocess directory), behind
    the metrics token."""
    settings.JOIN_WAIT_SECONDS = 20
    settings.METRICS_TOKEN = "worker-metrics-token-for-the-test-0123456789"
    r = queueing.client()
    r.delete(queueing.PENDING, *[queueing.SLOT.format(i) for i in range(16)])
    MediaNodeFactory(name="paris-1")
    room = RoomFactory(slug="obs-erva-bles", name="r", owner=world.agent_a)
    port = free_port()
    env = {
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "CELERY_METRICS_PORT": str(port),
        "CELERY_METRICS_ADDR": "127.0.0.1",
        "METRICS_TOKEN": settings.METRICS_TOKEN,
        "LOG_FORMAT": "json",
    }
    client = Client()
    client.force_login(world.agent_a)
    with celery_worker(
        queues="allocation", concurrency=1, name="obs", env=env, loglevel="INFO"
    ) as worker:
        response = client.post(
            f"/api/v1/rooms/{room.slug}/join/", HTTP_X_REQUEST_ID="join-request-0123456789"
        )
        assert response.status_code == 200, response.content
        url = f"http://127.0.0.1:{port}/metrics"
        assert requests.get(url, timeout=5).status_code == 401
        deadline = time.monotonic() + 10
        while True:
            scraped = requests.get(
                url, timeout=5, headers={"Authorization": f"Bearer {settings.METRICS_TOKEN}"}
            )
            samples = parse(scraped.text)
            if value(samples, "visio_allocations_total", outcome="placed") or (
                time.monotonic() > deadline
            ):
                break
            time.sleep(0.2)
        # The worker logs a task's success just after it returns: wait for the line.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            log = worker_output(worker)
            if any("room_allocate_drain" in x and "succeeded" in x for x in log.splitlines()):
                break
            time.sleep(0.2)
    output = log
    assert value(samples, "visio_allocations_total", outcome="placed") == 1
    assert value(samples, "visio_allocation_seconds_count", outcome="placed") == 1
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert lines, output[-2000:]
    drained = [
        e for e in lines if "room_allocate_drain" in e["message"] and "succeeded" in e["message"]
    ]
    assert drained and {e["request_id"] for e in drained} == {"join-request-0123456789"}
