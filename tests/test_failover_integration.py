"""Health, failover and drain through a real Celery worker on Redis and PostgreSQL,
with simulated LiveKit nodes: a killed node's rooms move, a hung node is detected,
a drained node empties."""

import time

import pytest
from django.utils import timezone

from audit.actor import Actor
from controlplane.celery import app
from devtools.livekit_sim import SimulatedNode
from media_nodes import services
from media_nodes.models import Allocation, MediaNode
from media_nodes.tasks import media_node_probe_all
from rooms.models import Room
from tests.conftest import requires_postgres, requires_redis
from tests.workers import celery_worker

pytestmark = [requires_postgres, requires_redis, pytest.mark.integration]

KEY, SECRET = "devkey", "integration-node-secret-".ljust(40, "i")


def probe_rounds(n):
    for _ in range(n):
        media_node_probe_all.apply_async().get(timeout=90)


def wait_for(condition, timeout=90):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.django_db(transaction=True)
def test_killed_hung_and_drained_nodes(world):
    sims = [SimulatedNode(KEY, SECRET, name=f"s{i}").start() for i in range(4)]
    try:
        nodes = [
            services.node_add(
                actor=Actor.system("tests"),
                name=f"node-{i}",
                url=sim.url,
                api_key=KEY,
                api_secret=SECRET,
                region="paris",
                capacity=2000,
            )
            for i, sim in enumerate(sims)
        ]
        rooms = [
            Room.objects.create(
                slug=f"int-room-{i:03d}", name="r", owner=world.agent_a, ministry=world.a
            )
            for i in range(120)
        ]
        app.control.purge()
        env = {"MEDIA_NODE_TIMEOUT_SECONDS": "0.5", "MEDIA_NODE_REPLACE_BATCH": "20"}
        with celery_worker(queues="allocation,health", concurrency=4, name="fo", env=env):
            from media_nodes.tasks import room_allocate_task

            for room in rooms:
                room_allocate_task.apply_async((str(room.pk), None))
            assert wait_for(
                lambda: Allocation.objects.filter(closed_at__isnull=True).count() == 120
            )
            on = {
                n.pk: Allocation.objects.filter(node=n, closed_at__isnull=True).count()
                for n in nodes
            }
            assert all(count == 30 for count in on.values()), on

            # Killed: refused connections; after three probe rounds its rooms move.
            sims[0].die()
            started = time.monotonic()
            probe_rounds(3)
            assert not MediaNode.objects.get(pk=nodes[0].pk).is_up
            assert wait_for(
                lambda: (
                    not Allocation.objects.filter(node=nodes[0], closed_at__isnull=True).exists()
                )
            )
            # Hung: accepts and never answers; detected within the probes' timeouts.
            sims[1].hang()
            probe_rounds(3)
            assert not MediaNode.objects.get(pk=nodes[1].pk).is_up
            assert wait_for(
                lambda: (
                    not Allocation.objects.filter(node=nodes[1], closed_at__isnull=True).exists()
                )
            )
            # Generous: the suite may share two CPUs with other work (the bench times it).
            assert time.monotonic() - started < 120
            # Drained with a deadline already passed: its rooms move, then it is released.
            services.node_set_state(
                actor=Actor.system("tests"),
                node=nodes[2],
                state="draining",
                deadline=timezone.now(),
            )
            probe_rounds(1)
            assert wait_for(
                lambda: (
                    not Allocation.objects.filter(node=nodes[2], closed_at__isnull=True).exists()
                )
            )
            probe_rounds(1)
            assert MediaNode.objects.get(pk=nodes[2].pk).state == "cordoned"
    finally:
        for sim in sims:
            sim.stop()
    live = Allocation.objects.filter(closed_at__isnull=True)
    assert live.count() == 120 and set(live.values_list("node", flat=True)) == {nodes[3].pk}
    reasons = set(Allocation.objects.exclude(closed_at=None).values_list("close_reason", flat=True))
    assert reasons == {"node_down", "drained"}
    node = MediaNode.objects.get(pk=nodes[3].pk)
    assert node.reserved_participants == 120 * 10 <= node.capacity
