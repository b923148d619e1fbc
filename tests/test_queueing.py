"""Coalesced placement requests on Redis: batches, one placement per room, an outcome
per request, slots freed, nothing stranded."""

import pytest

from media_nodes import queueing
from tests.conftest import requires_redis

pytestmark = requires_redis


@pytest.fixture
def redis_clean(settings):
    settings.ALLOCATION_BATCH = 3
    settings.ALLOCATION_DRAINERS = 2
    r = queueing.client()
    keys = [queueing.PENDING] + [queueing.SLOT.format(i) for i in range(8)]
    r.delete(*keys)
    yield r
    r.delete(*keys)


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
    from media_nodes import tasks

    monkeypatch.setattr(
        tasks.room_allocate_drain, "apply_async", lambda args, **kw: started.append(args)
    )
    r = redis_clean
    assert queueing.wake(r, 0) is True
    assert queueing.wake(r, 0) is False
    assert queueing.wake(r, 1) is True
    assert started == [(0,), (1,)]
    assert 0 < r.pttl(queueing.SLOT.format(0)) <= queueing.SLOT_TTL_MS


def test_eager_mode_places_inline(world, settings):
    """Without a broker (the demo) a request is placed at once and returns its outcome."""
    from rooms.models import Room
    from tests.test_placement import make_node, make_room

    make_node("n1")
    room = make_room(world.agent_a)
    outcome = queueing.request(room.pk)
    assert isinstance(outcome, dict) and "allocation" in outcome
    assert Room.objects.get(pk=room.pk).allocations.filter(closed_at__isnull=True).count() == 1
