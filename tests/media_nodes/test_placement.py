"""Placement of rooms on media nodes: the rule (property tests), idempotence,
the database's guarantees, and concurrent placements."""

import threading
from collections import Counter

import pytest
from django.db import IntegrityError, connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.models import AuditEvent
from media_nodes import placement
from media_nodes.allocations import allocation_live_get, allocation_place
from media_nodes.models import Allocation, MediaNode
from media_nodes.placement import NoNodeAvailable
from rooms.models import Room
from tests.factories import (
    AgentFactory,
    AllocationFactory,
    MediaNodeFactory,
    MinistryFactory,
    RoomFactory,
    room_created_by,
)

pytestmark = pytest.mark.django_db


NODE = st.fixed_dictionaries(
    {
        "capacity": st.integers(1, 60),
        "region": st.sampled_from(["paris", "lyon"]),
        "tags": st.sets(st.sampled_from(["secnumcloud", "hds", "dr"]), max_size=2),
        "fill": st.floats(0, 1.2),
        "state": st.sampled_from(["active", "active", "active", "cordoned", "draining"]),
        "is_up": st.sampled_from([True, True, True, False]),
    }
)


@pytest.mark.property
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    nodes=st.lists(NODE, min_size=0, max_size=6),
    size=st.integers(2, 40),
    tags=st.sets(st.sampled_from(["secnumcloud", "hds"]), max_size=2),
    region=st.sampled_from(["paris", "lyon", None]),
)
def test_placement_rule(db, nodes, size, tags, region):
    """Never over capacity, tags always respected, region preferred when possible,
    and a refusal only when no node could take the room."""
    sid = transaction.savepoint()
    try:
        rows = []
        for i, spec in enumerate(nodes):
            reserved = min(int(spec["capacity"] * spec["fill"]), spec["capacity"])
            rows.append(
                MediaNodeFactory(
                    name=f"n{i}",
                    capacity=spec["capacity"],
                    region=spec["region"],
                    tags=spec["tags"],
                    reserved=reserved,
                    observed=int(spec["capacity"] * spec["fill"]),
                    state=spec["state"],
                    is_up=spec["is_up"],
                )
            )

        def fits(n):
            load = max(n.reserved_participants, n.observed_participants)
            return (
                n.state == "active"
                and n.is_up
                and set(tags) <= set(n.tags)
                and load + size <= n.capacity
            )

        possible = [n for n in rows if fits(n)]
        ministry = MinistryFactory(residency_tags=sorted(tags))
        owner = AgentFactory(ministry=ministry)
        room = RoomFactory(slug="abc-defg-hij", name="r", owner=owner, expected_size=size)
        with transaction.atomic():
            if not possible:
                with pytest.raises(NoNodeAvailable):
                    allocation_place(room_id=room.pk, region=region)
                return
            chosen = allocation_place(room_id=room.pk, region=region)
        chosen_row = next(n for n in rows if n.pk == chosen.node_id)
        assert fits(chosen_row)
        fresh = MediaNode.objects.get(pk=chosen.node_id)
        assert fresh.reserved_participants == chosen_row.reserved_participants + size
        assert fresh.reserved_participants <= fresh.capacity
        if region and any(n.region == region for n in possible):
            assert chosen_row.region == region
        # Among the preferred nodes, the least filled one is chosen.
        preferred = [n for n in possible if n.region == chosen_row.region]
        fill = lambda n: (max(n.reserved_participants, n.observed_participants) + size) / n.capacity  # noqa: E731
        assert fill(chosen_row) == min(fill(n) for n in preferred)
    finally:
        transaction.savepoint_rollback(sid)


def test_the_database_refuses_an_overbooked_node(db):
    node = MediaNodeFactory(name="solo", capacity=10, reserved=8)
    with pytest.raises(IntegrityError), transaction.atomic():
        MediaNode.objects.filter(pk=node.pk).update(reserved_participants=11)


def test_allocation_is_idempotent_and_one_live_per_room(world):
    node = MediaNodeFactory(name="a1")
    room = room_created_by(world.agent_a)
    first = allocation_place(room_id=room.pk)
    again = allocation_place(room_id=room.pk)
    assert first.allocation_id == again.allocation_id
    assert (first.outcome, again.outcome) == ("placed", "existing")
    assert MediaNode.objects.get().reserved_participants == room.expected_size
    with pytest.raises(IntegrityError), transaction.atomic():
        AllocationFactory(room=room, node=node, reserved=2)


def test_residency_tags_and_no_node_alert(world):
    world.a.residency_tags = ["secnumcloud"]
    world.a.save()
    MediaNodeFactory(name="plain", tags=[])
    room = room_created_by(world.agent_a)
    with pytest.raises(NoNodeAvailable) as refused:
        allocation_place(room_id=room.pk)
    assert "serveur" in str(refused.value) or "server" in str(refused.value)
    assert AuditEvent.objects.filter(action="allocation.no_node").exists()
    qualified = MediaNodeFactory(name="qualified", tags=["secnumcloud"])
    assert allocation_place(room_id=room.pk).node_id == qualified.pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_placements_spread_and_never_overbook(world):
    """200 rooms placed by 16 threads at once on 5 nodes: one allocation per room, no
    node over capacity, and the burst spread evenly."""
    nodes = [MediaNodeFactory(name=f"s{i}", capacity=450) for i in range(5)]
    rooms = [room_created_by(world.agent_a, size=10) for _ in range(200)]
    errors = []
    barrier = threading.Barrier(16)

    def worker(chunk):
        barrier.wait()
        try:
            for room in chunk:
                for _ in range(2):  # twice: joins race for the same room too
                    allocation_place(room_id=room.pk)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    chunks = [rooms[i::16] + rooms[(i + 1) % 16 :: 16] for i in range(16)]
    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    live = Allocation.objects.filter(closed_at__isnull=True)
    assert live.count() == 200
    assert live.values("room").distinct().count() == 200
    per_node = Counter(live.values_list("node__name", flat=True))
    for node in nodes:
        node.refresh_from_db()
        assert node.reserved_participants == per_node[node.name] * 10 <= node.capacity
    loads = [per_node[n.name] for n in nodes]
    assert max(loads) / (sum(loads) / len(loads)) <= 1.10, per_node


def test_placement_statement_orders_tags_then_region_then_fill(world):
    """Tags first, then the region, then the fill after placement; a room already live
    is found, not placed twice; a refusal leaves every node's reservation as it was."""
    world.a.residency_tags = ["secnumcloud"]
    world.a.save()
    MediaNodeFactory(name="plain-paris", region="paris", tags=[])
    lyon = MediaNodeFactory(name="qualified-lyon", region="lyon", tags=["secnumcloud"])
    paris = MediaNodeFactory(
        name="qualified-paris", region="paris", tags=["secnumcloud"], reserved=50
    )
    small = MediaNodeFactory(
        name="qualified-paris-small", region="paris", tags=["secnumcloud"], capacity=15
    )
    room = room_created_by(world.agent_a, size=10)
    first = placement.place(room_id=room.pk, region="paris")
    # Tags first, then the region, then the fill after placement (small: 10/15 > 60/100).
    assert (first.outcome, first.node_id) == ("placed", paris.pk)
    again = placement.place(room_id=room.pk, region="paris")
    assert (again.outcome, again.allocation_id) == ("existing", first.allocation_id)
    other = room_created_by(world.agent_a, size=10)
    assert placement.place(room_id=other.pk, region="lyon").node_id == lyon.pk
    MediaNode.objects.filter(pk__in=[lyon.pk, paris.pk, small.pk]).update(is_up=False)
    third = room_created_by(world.agent_a, size=10)
    with pytest.raises(NoNodeAvailable) as refused:
        placement.place(room_id=third.pk, region="paris")
    assert (refused.value.size, refused.value.tags) == (10, ["secnumcloud"])
    assert MediaNode.objects.get(pk=paris.pk).reserved_participants == 60


def test_release_gives_the_reservation_back_once(world):
    """Releasing closes the live allocation with its reason and gives its seats back to
    its node, once: a second release finds nothing live and changes nothing."""
    node = MediaNodeFactory(name="r1")
    room = room_created_by(world.agent_a, size=10)
    placed = allocation_place(room_id=room.pk)
    released = placement.release(allocation_id=placed.allocation_id, reason="finished")
    assert (released.room_id, released.node_id, released.region) == (room.pk, node.pk, "paris")
    assert allocation_live_get(room_id=room.pk) is None
    assert Allocation.objects.get(pk=placed.allocation_id).close_reason == "finished"
    assert MediaNode.objects.get(pk=node.pk).reserved_participants == 0
    assert placement.release(room_id=room.pk, reason="finished") is None
    assert MediaNode.objects.get(pk=node.pk).reserved_participants == 0


def test_a_deleted_room_is_not_placed(world):
    """A room deleted before its placement is refused as gone, and no seat is taken."""
    node = MediaNodeFactory(name="d1")
    room = room_created_by(world.agent_a)
    Room.objects.filter(pk=room.pk).update(deleted_at=room.created_at)
    with pytest.raises(placement.RoomGone):
        allocation_place(room_id=room.pk)
    assert MediaNode.objects.get(pk=node.pk).reserved_participants == 0
