"""Coalesced placement requests on Redis: batches, one placement per room, an outcome
per request, slots freed, nothing stranded (a dead drainer's rooms, a lost Redis)."""

import pytest

from media_nodes import queueing
from tests.factories import MediaNodeFactory, room_created_by
from tests.support.skips import requires_redis

pytestmark = requires_redis


@pytest.fixture
def redis_clean(settings):
    settings.ALLOCATION_BATCH = 3
    settings.ALLOCATION_DRAINERS = 2
    r = queueing.client()
    keys = [queueing.PENDING] + [queueing.SLOT.format(i) for i in range(8)]
    keys += [queueing.INFLIGHT.format(i) for i in range(8)]
    r.delete(*keys, *r.keys(queueing.OUTCOME.format("*")))
    yield r
    r.delete(*keys, *r.keys(queueing.OUTCOME.format("*")))


def push(r, room, nonce, region=""):
    r.rpush(queueing.PENDING, f"{room}|{region}|{nonce}")


def test_drain_places_each_room_once_and_answers_every_request(redis_clean):
    r = redis_clean
    for room, nonce in [("a", "n1"), ("a", "n2"), ("b", "n3"), ("c", "n4"), ("d", "n5")]:
        push(r, room, nonce)
    r.set(queueing.SLOT.format(0), "1")
    calls = []

    def place(room_id, region):
        calls.append(room_id)
        return "no_node:full" if room_id == "d" else "placed"

    assert queueing.drain(0, place) == 4
    assert calls == ["a", "b", "c", "d"]  # "a" asked twice in one batch: placed once
    assert [queueing.outcome(n) for n in ("n1", "n2", "n3", "n4")] == ["placed"] * 4
    assert queueing.outcome("n5") == "no_node:full"
    assert r.llen(queueing.PENDING) == 0
    assert not r.exists(queueing.SLOT.format(0))  # the slot is free again


def test_a_busy_slot_starts_no_second_drainer(redis_clean, monkeypatch):
    started = []

    monkeypatch.setattr(queueing, "drainer_start", lambda slot: started.append((slot,)))
    r = redis_clean
    assert queueing.wake(r, 0) is True
    assert queueing.wake(r, 0) is False
    assert queueing.wake(r, 1) is True
    assert started == [(0,), (1,)]
    assert 0 < r.pttl(queueing.SLOT.format(0)) <= queueing.SLOT_TTL_MS


def test_a_drainer_is_queued_by_the_task_s_own_name(monkeypatch):
    """queueing names the drainer task instead of importing it: the name it sends is
    the task's, with the slot, on the allocation queue."""
    from controlplane.celery import app
    from media_nodes.tasks import room_allocate_drain

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args, **kw: sent.append((name, args)))
    queueing.drainer_start(3)
    assert sent == [(room_allocate_drain.name, (3,))]
    assert app.amqp.router.route({}, sent[0][0])["queue"].name == "allocation"


def test_eager_mode_places_inline(world, settings):
    """Without a broker (the demo) a request is placed at once and returns its outcome."""
    from rooms.models import Room

    MediaNodeFactory(name="n1")
    room = room_created_by(world.agent_a)
    outcome = queueing.request(room.pk)
    assert isinstance(outcome, dict) and "allocation" in outcome
    assert Room.objects.get(pk=room.pk).allocations.filter(closed_at__isnull=True).count() == 1


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler sees it."""


def test_a_killed_drainers_rooms_are_placed_by_the_next_drainer_of_its_slot(redis_clean):
    """What a drainer popped and never answered stays in flight for its slot's next one."""
    r = redis_clean
    for room, nonce in [("a", "n1"), ("b", "n2"), ("c", "n3")]:
        push(r, room, nonce)

    def dies_on_b(room_id, region):
        if room_id == "b":
            raise Killed
        return "placed"

    with pytest.raises(Killed):
        queueing.drain(0, dies_on_b)
    assert r.llen(queueing.PENDING) == 0 and r.llen(queueing.INFLIGHT.format(0)) == 3
    assert queueing.outcome("n1") is None  # answers are written after the batch

    calls = []
    assert queueing.drain(0, lambda room, region: calls.append(room) or "placed") == 3
    assert calls == ["a", "b", "c"]
    assert [queueing.outcome(n) for n in ("n1", "n2", "n3")] == ["placed"] * 3
    assert r.llen(queueing.INFLIGHT.format(0)) == 0


def test_a_room_that_cannot_be_placed_does_not_block_the_slot(redis_clean, world):
    """A bug on one room answers it "failed" and drops its request (beat will not ask
    again and again); the others are placed."""
    from media_nodes.models import PlacementRequest

    r = redis_clean
    bad = room_created_by(world.agent_a)
    PlacementRequest.objects.create(room=bad)
    for room, nonce in [("a", "n1"), (str(bad.pk), "n2"), ("c", "n3")]:
        push(r, room, nonce)

    def place(room_id, region):
        if room_id == str(bad.pk):
            raise ValueError("a bug")
        return "placed"

    assert queueing.drain(0, place) == 3
    assert [queueing.outcome(n) for n in ("n1", "n2", "n3")] == ["placed", "failed", "placed"]
    assert r.llen(queueing.INFLIGHT.format(0)) == 0 and r.llen(queueing.PENDING) == 0
    assert not PlacementRequest.objects.exists()


def test_a_soft_time_limit_leaves_the_rest_in_flight(redis_clean):
    """Asked to stop (soft time limit): the drainer stops, its rooms wait in flight."""
    from celery.exceptions import SoftTimeLimitExceeded

    r = redis_clean
    for room, nonce in [("a", "n1"), ("b", "n2")]:
        push(r, room, nonce)

    def place(room_id, region):
        raise SoftTimeLimitExceeded()

    with pytest.raises(SoftTimeLimitExceeded):
        queueing.drain(0, place)
    assert r.llen(queueing.INFLIGHT.format(0)) == 2


def test_a_transient_error_leaves_the_rest_in_flight(redis_clean):
    """The database unreachable: what is done is answered, the rest waits in flight."""
    from django.db import OperationalError

    r = redis_clean
    for room, nonce in [("a", "n1"), ("b", "n2"), ("c", "n3")]:
        push(r, room, nonce)

    def place(room_id, region):
        if room_id == "b":
            raise OperationalError("the server closed the connection")
        return "placed"

    with pytest.raises(OperationalError):
        queueing.drain(0, place)
    assert queueing.outcome("n1") == "placed" and queueing.outcome("n2") is None
    assert r.lrange(queueing.INFLIGHT.format(0), 0, -1) == [b"b||n2", b"c||n3"]


def test_placement_answers_the_rooms_request(world):
    """Placed, already live or refused: the request row is gone, so beat asks no more."""
    from media_nodes.allocations import allocation_place
    from media_nodes.models import MediaNode, PlacementRequest

    node = MediaNodeFactory(name="n1", capacity=20)
    rooms = [room_created_by(world.agent_a) for _ in range(3)]
    PlacementRequest.objects.bulk_create([PlacementRequest(room=room) for room in rooms])
    assert queueing.place_outcome(str(rooms[0].pk), None) == "placed"  # a drainer's call
    assert not PlacementRequest.objects.filter(room=rooms[0]).exists()
    PlacementRequest.objects.create(room=rooms[0])
    assert queueing.place_outcome(str(rooms[0].pk), None) == "placed"  # already live
    assert not PlacementRequest.objects.filter(room=rooms[0]).exists()
    MediaNode.objects.filter(pk=node.pk).update(state="cordoned")
    assert queueing.place_outcome(str(rooms[1].pk), None).startswith("no_node:")  # refused
    assert not PlacementRequest.objects.filter(room=rooms[1]).exists()
    MediaNode.objects.filter(pk=node.pk).update(state="active")
    allocation_place(room_id=rooms[2].pk)  # the service's own call
    assert not PlacementRequest.objects.exists()


def test_beat_sweep_asks_again_for_requests_redis_lost(world, redis_clean, monkeypatch):
    """Requests older than the period are pushed again (once per period) and drainers
    woken; fresh ones are left to their join, deleted rooms' requests dropped."""
    from datetime import timedelta

    from django.utils import timezone

    from media_nodes.models import PlacementRequest

    started = []
    monkeypatch.setattr(queueing, "drainer_start", lambda slot: started.append((slot,)))
    r = redis_clean
    old, fresh, deleted = (room_created_by(world.agent_a) for _ in range(3))
    long_ago = timezone.now() - timedelta(seconds=30)
    PlacementRequest.objects.create(room=old, region="lyon", requested_at=long_ago)
    PlacementRequest.objects.create(room=fresh)
    PlacementRequest.objects.create(room=deleted, requested_at=long_ago)
    deleted.deleted_at = timezone.now()
    deleted.save()

    assert queueing.sweep(older_than_seconds=5) == 1
    assert r.lrange(queueing.PENDING, 0, -1) == [f"{old.pk}|lyon|".encode()]
    assert sorted(started) == [(0,), (1,)]  # every free slot (ALLOCATION_DRAINERS = 2)
    assert set(PlacementRequest.objects.values_list("room", flat=True)) == {old.pk, fresh.pk}
    assert queueing.sweep(older_than_seconds=5) == 0  # not again within the period

    # Its drainer places it; nobody waits for an outcome.
    calls = []
    assert queueing.drain(0, lambda room, region: calls.append((room, region)) or "placed") == 1
    assert calls == [(str(old.pk), "lyon")]
    assert not r.keys(queueing.OUTCOME.format("*"))


def test_beat_sweep_wakes_the_slot_of_a_dead_drainer(redis_clean, monkeypatch, db):
    """Rooms left in flight by a dead drainer get a drainer even if no join comes."""

    started = []
    monkeypatch.setattr(queueing, "drainer_start", lambda slot: started.append((slot,)))
    r = redis_clean
    r.rpush(queueing.INFLIGHT.format(1), b"a||n1")
    r.set(queueing.SLOT.format(0), "1")  # a live drainer holds slot 0
    assert queueing.sweep(older_than_seconds=5) == 0
    assert started == [(1,)]
