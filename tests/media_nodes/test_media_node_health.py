"""Media nodes against simulated LiveKit nodes: credentials, probes with hysteresis,
a killed node's rooms moving, a hung node detected, drains and reconciliation."""

import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from audit.actor import Actor
from audit.models import AuditEvent
from devtools.livekit_sim import SimulatedNode
from media_nodes import services
from media_nodes.allocations import allocation_place
from media_nodes.models import Allocation, MediaNode
from media_nodes.tasks import media_node_probe_all, media_node_reconcile_all
from tests.factories import room_created_by

pytestmark = pytest.mark.django_db

KEY = "devkey"
SECRET = "simulated-node-secret-".ljust(40, "s")


@pytest.fixture
def sims():
    nodes = [SimulatedNode(KEY, SECRET, name=f"sim{i}").start() for i in range(3)]
    yield nodes
    for node in nodes:
        node.stop()


def add(sim, name, **extra):
    return services.node_add(
        actor=Actor.system("tests"),
        name=name,
        url=sim.url,
        api_key=KEY,
        api_secret=SECRET,
        region=extra.pop("region", "paris"),
        capacity=extra.pop("capacity", 1000),
        **extra,
    )


def rooms_on(node, world, count):
    """Place ``count`` rooms, all on ``node`` (the others cordoned meanwhile)."""
    MediaNode.objects.exclude(pk=node.pk).update(state="cordoned")
    rooms = [room_created_by(world.agent_a, size=5, name=f"r{i}") for i in range(count)]
    for room in rooms:
        assert allocation_place(room_id=room.pk).node_id == node.pk
    MediaNode.objects.exclude(pk=node.pk).update(state="active")
    return rooms


def test_adding_a_node_checks_its_credentials(sims):
    node = add(sims[0], "good")
    assert node.last_heartbeat_at is not None and node.api_secret == SECRET
    with pytest.raises(ValidationError) as refused:
        services.node_add(
            actor=Actor.system("tests"),
            name="bad",
            url=sims[1].url,
            api_key=KEY,
            api_secret="another-secret".ljust(40, "x"),
            region="paris",
            capacity=10,
        )
    assert "refused" in str(refused.value) or "did not answer" in str(refused.value)
    assert SECRET not in str(refused.value)
    assert not MediaNode.objects.filter(name="bad").exists()


def test_hysteresis_a_flapping_node_does_not_bounce(sims, settings):
    node = add(sims[0], "flappy")
    sims[0].die()
    media_node_probe_all()
    media_node_probe_all()
    sims[0].recover()
    media_node_probe_all()  # two failures then a success: still up
    node.refresh_from_db()
    assert node.is_up and node.consecutive_failures == 0
    sims[0].die()
    for _ in range(settings.MEDIA_NODE_DOWN_AFTER_FAILURES):
        media_node_probe_all()
    node.refresh_from_db()
    assert not node.is_up
    sims[0].recover()
    for expected_up in [False] * (settings.MEDIA_NODE_UP_AFTER_SUCCESSES - 1) + [True]:
        media_node_probe_all()
        node.refresh_from_db()
        assert node.is_up is expected_up
    assert AuditEvent.objects.filter(action="media_node.down").count() == 1
    assert AuditEvent.objects.filter(action="media_node.up").count() == 1


def test_a_killed_nodes_rooms_move_to_healthy_nodes(sims, world, settings):
    victim, other, third = (add(s, f"n{i}") for i, s in enumerate(sims))
    rooms = rooms_on(victim, world, 30)
    sims[0].die()
    for _ in range(settings.MEDIA_NODE_DOWN_AFTER_FAILURES):
        media_node_probe_all()
    victim.refresh_from_db()
    assert not victim.is_up and victim.reserved_participants == 0
    live = Allocation.objects.filter(closed_at__isnull=True)
    assert live.count() == 30 and not live.filter(node=victim).exists()
    assert set(live.values_list("node", flat=True)) == {other.pk, third.pk}
    closed = Allocation.objects.filter(node=victim)
    assert closed.count() == 30 and set(closed.values_list("close_reason", flat=True)) == {
        "node_down"
    }
    # The next join for those rooms lands on the new node.
    assert allocation_place(room_id=rooms[0].pk).node_id in (other.pk, third.pk)


def test_a_hung_node_is_detected_within_its_timeouts(sims, settings):
    settings.MEDIA_NODE_TIMEOUT_SECONDS = 0.3
    node = add(sims[0], "hung")
    add(sims[1], "fine")
    sims[0].hang()
    started = time.monotonic()
    for _ in range(settings.MEDIA_NODE_DOWN_AFTER_FAILURES):
        media_node_probe_all()
    elapsed = time.monotonic() - started
    node.refresh_from_db()
    assert not node.is_up
    assert MediaNode.objects.get(name="fine").is_up
    # Probes run in parallel with short timeouts: three rounds cost about 3 timeouts.
    assert elapsed < settings.MEDIA_NODE_DOWN_AFTER_FAILURES * 0.3 + 2


def test_a_drained_node_empties_then_is_released(sims, world):
    node = add(sims[0], "old")
    add(sims[1], "new")
    rooms_on(node, world, 5)
    operator = Actor.system("tests")
    from django.utils import timezone

    services.node_set_state(
        actor=operator,
        node=node,
        state="draining",
        deadline=timezone.now() + timezone.timedelta(hours=1),
    )
    media_node_probe_all()  # before the deadline: rooms stay, no new ones come
    assert Allocation.objects.filter(node=node, closed_at__isnull=True).count() == 5
    extra = room_created_by(world.agent_a, size=5, name="x")
    assert MediaNode.objects.get(pk=allocation_place(room_id=extra.pk).node_id).name == "new"
    MediaNode.objects.filter(pk=node.pk).update(drain_deadline=timezone.now())
    media_node_probe_all()  # deadline passed: rooms move
    assert not Allocation.objects.filter(node=node, closed_at__isnull=True).exists()
    assert set(Allocation.objects.filter(node=node).values_list("close_reason", flat=True)) == {
        "drained"
    }
    media_node_probe_all()  # empty: released
    node.refresh_from_db()
    assert node.state == "cordoned" and node.drain_deadline is None
    assert AuditEvent.objects.filter(action="media_node.drained").exists()


def test_reconcile_mends_both_ways(sims, world):
    node = add(sims[0], "n0")
    rooms = rooms_on(node, world, 2)
    Allocation.objects.update(
        created_at=Allocation.objects.first().created_at - timedelta(minutes=5)
    )
    sims[0].join(rooms[0].slug, "someone")  # room 0 is really there; room 1 vanished
    sims[0].join("nobody-allocated-this", "intruder")
    report = media_node_reconcile_all()["n0"]
    assert report["closed"] == 1 and report["deleted"] == 1
    assert sims[0].room_names() == [rooms[0].slug]
    vanished = Allocation.objects.get(room=rooms[1])
    assert vanished.close_reason == "vanished"
    node.refresh_from_db()
    assert node.observed_participants == 1 and node.reserved_participants == 5


@pytest.mark.django_db(transaction=True)
def test_moving_rooms_off_a_dead_node_in_one_statement_each(sims, world, settings):
    """Outside a transaction (as on a worker), each room is released in one statement
    and placed again in another: the dead node's reservation goes back to zero, the
    new nodes' rises by the rooms' sizes, and every old allocation is closed as
    node_down. A room another mover holds is left to it, then moved by the next
    batch."""
    import threading

    from django.db import connection, connections

    victim, other, third = (add(s, f"n{i}") for i, s in enumerate(sims))
    rooms_on(victim, world, 12)
    held = Allocation.objects.filter(node=victim).order_by("created_at").first()
    locked, done = threading.Event(), threading.Event()

    def mover_elsewhere():
        try:
            with transaction.atomic():
                Allocation.objects.select_for_update().get(pk=held.pk)
                locked.set()
                done.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=mover_elsewhere)
    thread.start()
    try:
        assert locked.wait(10)
        MediaNode.objects.filter(pk=victim.pk).update(is_up=False)
        assert not connection.in_atomic_block
        assert services.move_rooms(victim.pk, reason="node_down", limit=100) == (12, 0)
        live = Allocation.objects.filter(node=victim, closed_at__isnull=True)
        assert list(live.values_list("pk", flat=True)) == [held.pk]  # left to its mover
    finally:
        done.set()
        thread.join()
    assert services.move_rooms(victim.pk, reason="node_down", limit=100) == (1, 0)
    victim.refresh_from_db()
    assert victim.reserved_participants == 0
    live = Allocation.objects.filter(closed_at__isnull=True)
    assert live.count() == 12 and not live.filter(node=victim).exists()
    for node in (other, third):
        node.refresh_from_db()
        assert node.reserved_participants == 5 * live.filter(node=node).count()
    closed = Allocation.objects.filter(node=victim)
    assert set(closed.values_list("close_reason", flat=True)) == {"node_down"}
    assert closed.filter(closed_at__isnull=True).count() == 0
