"""Media nodes that die, hang, drain or flap, through a real Celery worker on Redis
and PostgreSQL, with simulated LiveKit nodes (devtools/livekit_sim.py)."""

import time

import pytest
from django.utils import timezone

from audit.actor import Actor
from audit.models import AuditEvent
from controlplane.celery import app
from devtools.livekit_sim import SimulatedNode
from media_nodes import services
from media_nodes.models import Allocation, MediaNode
from media_nodes.tasks import media_node_probe_all, room_allocate_task
from tests.factories import RoomFactory
from tests.reliability.processes import wait_for
from tests.support.skips import requires_redis
from tests.workers import celery_worker

pytestmark = [requires_redis, pytest.mark.integration]

KEY, SECRET = "devkey", "integration-node-secret-".ljust(40, "i")
DOWN, UP = 3, 3  # probes in a row before a node is down, and before it is back
ENV = {
    "MEDIA_NODE_TIMEOUT_SECONDS": "0.5",
    "MEDIA_NODE_REPLACE_BATCH": "10",
    "MEDIA_NODE_DOWN_AFTER_FAILURES": str(DOWN),
    "MEDIA_NODE_UP_AFTER_SUCCESSES": str(UP),
}


@pytest.fixture(scope="module")
def worker(django_db_setup):
    """One worker for the module (allocation and health queues), on the test database."""
    app.control.purge()
    with celery_worker(queues="allocation,health", concurrency=4, name="faults", env=ENV) as w:
        yield w


@pytest.fixture
def sims():
    """Simulated LiveKit nodes registered as node-0, node-1...: ``sims(n)`` starts
    them and returns (simulators, nodes); all stopped after the test."""
    started = []

    def start(count, capacity=2000):
        new = [SimulatedNode(KEY, SECRET, name=f"s{i}").start() for i in range(count)]
        started.extend(new)
        nodes = [
            services.node_add(
                actor=Actor.system("tests"),
                name=f"node-{i}",
                url=sim.url,
                api_key=KEY,
                api_secret=SECRET,
                region="paris",
                capacity=capacity,
            )
            for i, sim in enumerate(new)
        ]
        return new, nodes

    yield start
    for sim in started:
        sim.stop()


def probe_rounds(n):
    for _ in range(n):
        media_node_probe_all.apply_async().get(timeout=90)


def place(rooms) -> list:
    """Place rooms through the worker (the task a join's drainer runs); their nodes."""
    results = [room_allocate_task.apply_async((str(room.pk), None)) for room in rooms]
    return [result.get(timeout=60)["node"] for result in results]


def new_rooms(world, prefix, count):
    return [
        RoomFactory(slug=f"{prefix}-{i:03d}", name="r", owner=world.agent_a) for i in range(count)
    ]


def live_on(node) -> int:
    return Allocation.objects.filter(node=node, closed_at__isnull=True).count()


def is_up(node) -> bool:
    return MediaNode.objects.get(pk=node.pk).is_up


@pytest.mark.django_db(transaction=True)
def test_killed_hung_and_drained_nodes(world, worker, sims):
    """Promise: a media node that dies or hangs is detected and its rooms are moved
    (in batches, each exactly once); a drained node empties, then is released."""
    simulators, nodes = sims(4)
    rooms = new_rooms(world, "fault-room", 80)
    place(rooms)
    spread = [live_on(node) for node in nodes]
    assert sum(spread) == 80 and min(spread) >= 15, spread  # every node has rooms to lose

    # Killed: refused connections; after DOWN probe rounds its rooms move.
    simulators[0].die()
    started = time.monotonic()
    probe_rounds(DOWN)
    assert not is_up(nodes[0])
    assert wait_for(lambda: live_on(nodes[0]) == 0)
    # Hung: accepts and never answers; detected within the probes' timeouts.
    simulators[1].hang()
    probe_rounds(DOWN)
    assert not is_up(nodes[1])
    assert wait_for(lambda: live_on(nodes[1]) == 0)
    # Generous: the suite may share two CPUs with other work (the bench times it).
    assert time.monotonic() - started < 120
    # Drained with a deadline already passed: its rooms move, then it is released.
    services.node_set_state(
        actor=Actor.system("tests"), node=nodes[2], state="draining", deadline=timezone.now()
    )
    probe_rounds(1)
    assert wait_for(lambda: live_on(nodes[2]) == 0)
    probe_rounds(1)
    assert MediaNode.objects.get(pk=nodes[2].pk).state == "cordoned"

    live = Allocation.objects.filter(closed_at__isnull=True)
    assert live.count() == 80 and live.values("room").distinct().count() == 80
    assert set(live.values_list("node", flat=True)) == {nodes[3].pk}
    reasons = set(Allocation.objects.exclude(closed_at=None).values_list("close_reason", flat=True))
    assert reasons == {"node_down", "drained"}
    # Reservations follow the rooms: all on the survivor, none left behind.
    reserved = dict(MediaNode.objects.values_list("pk", "reserved_participants"))
    assert reserved == {node.pk: 800 if node == nodes[3] else 0 for node in nodes}


@pytest.mark.django_db(transaction=True)
def test_a_flapping_node_is_never_declared_down_and_keeps_its_rooms(world, worker, sims):
    """Promise: a node that flaps (failing and answering in turns, faster than the
    hysteresis) is never declared down and none of its rooms move; a node that went
    down comes back only after UP successes in a row, and gets no new room meanwhile."""
    (flappy, steady), (node, other) = sims(2)
    MediaNode.objects.filter(pk=other.pk).update(state="cordoned")  # rooms go to `node`
    rooms = new_rooms(world, "flap-room", 10)
    place(rooms)
    MediaNode.objects.filter(pk=other.pk).update(state="active")
    assert live_on(node) == 10

    # Flapping: DOWN - 1 failures, then a success, over and over.
    for _ in range(3):
        flappy.die()
        for _ in range(DOWN - 1):
            probe_rounds(1)
            assert is_up(node)
        flappy.recover()
        probe_rounds(1)
        assert is_up(node)
    assert live_on(node) == 10 and not Allocation.objects.exclude(closed_at=None).exists()
    assert not AuditEvent.objects.filter(action="media_node.down").exists()

    # Down for real: DOWN failures in a row; its rooms move to the other node.
    flappy.die()
    probe_rounds(DOWN)
    assert not is_up(node)
    assert wait_for(lambda: live_on(node) == 0 and live_on(other) == 10)

    # Recovering, and flapping again: UP - 1 successes, a failure, UP - 1 successes.
    flappy.recover()
    probe_rounds(UP - 1)
    flappy.die()
    probe_rounds(1)
    flappy.recover()
    probe_rounds(UP - 1)
    assert not is_up(node)
    # Meetings starting meanwhile avoid it, empty as it is.
    assert set(place(new_rooms(world, "meanwhile", 5))) == {str(other.pk)}

    # The UP-th success in a row: back, and the emptiest node takes the next meeting.
    probe_rounds(1)
    assert is_up(node)
    assert place(new_rooms(world, "after", 1)) == [str(node.pk)]
    assert AuditEvent.objects.filter(action="media_node.down").count() == 1
    assert AuditEvent.objects.filter(action="media_node.up").count() == 1
