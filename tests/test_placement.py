"""Placement of rooms on media nodes: the rule (property tests), idempotence,
the database's guarantees, and concurrent placements."""

import threading
from collections import Counter

import pytest
from django.db import IntegrityError, connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.actor import Actor
from audit.models import AuditEvent
from media_nodes.models import Allocation, MediaNode
from media_nodes.placement import NoNodeAvailable, reserve
from rooms.services import room_allocate, room_create

pytestmark = pytest.mark.django_db


def make_node(name, *, capacity=100, region="paris", tags=(), reserved=0, observed=0, **extra):
    node = MediaNode(
        name=name,
        url=f"http://127.0.0.1:1/{name}",
        api_key="key",
        region=region,
        capacity=capacity,
        tags=list(tags),
        reserved_participants=reserved,
        observed_participants=observed,
        **extra,
    )
    node.api_secret = f"secret-{name}-".ljust(40, "x")
    node.save()
    return node


def make_room(agent, size=10):
    return room_create(actor=Actor(user=agent, label="t"), name="Réunion", expected_size=size)


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
                make_node(
                    f"n{i}",
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
        with transaction.atomic():
            if not possible:
                with pytest.raises(NoNodeAvailable):
                    reserve(size=size, tags=tags, region=region)
                return
            chosen = reserve(size=size, tags=tags, region=region)
        chosen_row = next(n for n in rows if n.pk == chosen.pk)
        assert fits(chosen_row)
        fresh = MediaNode.objects.get(pk=chosen.pk)
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
    node = make_node("solo", capacity=10, reserved=8)
    with pytest.raises(IntegrityError), transaction.atomic():
        MediaNode.objects.filter(pk=node.pk).update(reserved_participants=11)


def test_allocation_is_idempotent_and_one_live_per_room(world):
    make_node("a1")
    room = make_room(world.agent_a)
    first = room_allocate(room_id=room.pk)
    again = room_allocate(room_id=room.pk)
    assert first.pk == again.pk
    assert MediaNode.objects.get().reserved_participants == room.expected_size
    with pytest.raises(IntegrityError), transaction.atomic():
        Allocation.objects.create(room=room, node=first.node, reserved=2)


def test_residency_tags_and_no_node_alert(world):
    world.a.residency_tags = ["secnumcloud"]
    world.a.save()
    make_node("plain", tags=[])
    room = make_room(world.agent_a)
    with pytest.raises(NoNodeAvailable) as refused:
        room_allocate(room_id=room.pk)
    assert "serveur" in str(refused.value) or "server" in str(refused.value)
    assert AuditEvent.objects.filter(action="allocation.no_node").exists()
    qualified = make_node("qualified", tags=["secnumcloud"])
    assert room_allocate(room_id=room.pk).node_id == qualified.pk


@pytest.mark.django_db(transaction=True)
def test_concurrent_placements_spread_and_never_overbook(world):
    """200 rooms placed by 16 threads at once on 5 nodes: one allocation per room, no
    node over capacity, and the burst spread evenly."""
    nodes = [make_node(f"s{i}", capacity=450) for i in range(5)]
    rooms = [make_room(world.agent_a, size=10) for _ in range(200)]
    errors = []
    barrier = threading.Barrier(16)

    def worker(chunk):
        barrier.wait()
        try:
            for room in chunk:
                for _ in range(2):  # twice: joins race for the same room too
                    room_allocate(room_id=room.pk)
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


def test_one_statement_path_follows_the_same_rule(world):
    from media_nodes.placement import allocate_in_one_statement

    world.a.residency_tags = ["secnumcloud"]
    world.a.save()
    make_node("plain-paris", region="paris", tags=[])
    lyon = make_node("qualified-lyon", region="lyon", tags=["secnumcloud"])
    paris = make_node("qualified-paris", region="paris", tags=["secnumcloud"], reserved=50)
    small = make_node("qualified-paris-small", region="paris", tags=["secnumcloud"], capacity=15)
    room = make_room(world.agent_a, size=10)
    outcome, allocation_id, node_id = allocate_in_one_statement(room_id=room.pk, region="paris")
    # Tags first, then the region, then the fill after placement (small: 10/15 > 60/100).
    assert (outcome, node_id) == ("placed", paris.pk)
    assert allocate_in_one_statement(room_id=room.pk, region="paris")[:2] == (
        "existing",
        allocation_id,
    )
    other = make_room(world.agent_a, size=10)
    assert allocate_in_one_statement(room_id=other.pk, region="lyon")[2] == lyon.pk
    MediaNode.objects.filter(pk__in=[lyon.pk, paris.pk, small.pk]).update(is_up=False)
    third = make_room(world.agent_a, size=10)
    assert allocate_in_one_statement(room_id=third.pk, region="paris") is None
    assert MediaNode.objects.get(pk=paris.pk).reserved_participants == 60
