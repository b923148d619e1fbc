"""Allocation through a real Celery worker on Redis and PostgreSQL: many joins at once."""

import threading
from collections import Counter

import pytest
from django.db import connection
from django.test import Client

from controlplane.celery import app
from media_nodes.models import Allocation, MediaNode
from tests.factories import AgentFactory, MediaNodeFactory, RoomFactory
from tests.support.skips import requires_redis
from tests.workers import celery_worker

pytestmark = [requires_redis, pytest.mark.integration]


@pytest.mark.django_db(transaction=True)
def test_500_concurrent_joins_on_200_rooms_across_5_nodes(world, settings):
    """Exactly one allocation per room, no node over capacity, every join answered."""
    settings.JOIN_WAIT_SECONDS = 20
    nodes = [MediaNodeFactory(name=f"node-{i}", capacity=450) for i in range(5)]
    owner = world.agent_a
    rooms = [RoomFactory(slug=f"aaa-bbbb-{i:03d}", name="r", owner=owner) for i in range(200)]
    agents = [AgentFactory(ministry=world.a) for _ in range(25)]
    plan = [(agents[i % 25], rooms[i % 200].slug) for i in range(500)]
    statuses, errors = [], []
    app.control.purge()
    with celery_worker(queues="allocation", concurrency=4, name="alloc"):
        barrier = threading.Barrier(25)

        def run(jobs):
            try:
                client = Client()
                client.force_login(jobs[0][0])
                barrier.wait()
                for _agent, slug in jobs:
                    statuses.append(client.post(f"/api/v1/rooms/{slug}/join/").status_code)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                connection.close()

        per_agent = [[job for job in plan if job[0] == agent] for agent in agents]
        threads = [threading.Thread(target=run, args=(jobs,)) for jobs in per_agent]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert Counter(statuses) == {200: 500}
    live = Allocation.objects.filter(closed_at__isnull=True)
    assert live.count() == 200 and live.values("room").distinct().count() == 200
    for node in nodes:
        node.refresh_from_db()
        assert node.reserved_participants <= node.capacity
        assert node.reserved_participants == 10 * live.filter(node=node).count()
    assert MediaNode.objects.filter(reserved_participants__gt=0).count() == 5
