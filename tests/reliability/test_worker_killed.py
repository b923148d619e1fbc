"""A Celery worker killed with SIGKILL in the middle of an allocation, through the
real join path: joins coalesced on Redis, a drainer task on a real worker, PostgreSQL."""

import pytest
from django.test import Client

from controlplane.celery import app
from media_nodes import queueing
from media_nodes.models import Allocation, PlacementRequest
from tests.factories import MediaNodeFactory, RoomFactory
from tests.reliability.placement_locks import live, placement_waiting_on_a_lock, row_locked
from tests.reliability.processes import wait_for
from tests.support.skips import requires_redis
from tests.workers import celery_worker, kill_group, output

pytestmark = [requires_redis, pytest.mark.integration]


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_allocation_places_each_room_exactly_once(world, settings):
    """Promise: a Celery worker killed with SIGKILL in the middle of an allocation: the
    task is delivered again and the room is allocated exactly once (no leaked
    reservation, nothing the dead drainer had taken from Redis lost)."""
    settings.ALLOCATION_DRAINERS = 1  # one drainer slot: the one task holds both requests
    settings.JOIN_WAIT_SECONDS = 0.5
    node = MediaNodeFactory(name="kill-node", capacity=100)
    first, second = (
        RoomFactory(slug=f"kill-room-{i}", name="r", owner=world.agent_a) for i in (1, 2)
    )
    r = queueing.client()
    inflight = queueing.INFLIGHT.format(0)
    r.delete(queueing.PENDING, queueing.SLOT.format(0), inflight)
    app.control.purge()
    agent = Client()
    agent.force_login(world.agent_a)

    def join(room):
        return agent.post(f"/api/v1/rooms/{room.slug}/join/")

    # Two joins while no worker runs: both requests wait in Redis, one drainer is asked for.
    assert [join(room).status_code for room in (first, second)] == [202, 202]
    assert r.llen(queueing.PENDING) == 2

    with row_locked(second), celery_worker(queues="allocation", concurrency=1, name="doomed") as w:
        # The drainer took both requests, placed (and committed) the first room, and is
        # inside the placement transaction of the second: kill it there, children too.
        placing = wait_for(lambda: live(first) == 1 and placement_waiting_on_a_lock(), 60)
        assert placing, output(w)
        kill_group(w)
        assert live(second) == 0
        # What the dead drainer had taken is still in Redis, on its slot's in-flight list.
        assert r.llen(queueing.PENDING) == 0 and r.llen(inflight) == 2
    # The lock is released: the dead worker's session ends without committing.

    # Unacknowledged messages come back after the visibility timeout (seconds here).
    # No join and no beat meanwhile: only the drain task delivered again can place it.
    # (A worker refuses a timeout shorter than its tasks' limits: this one is told not to.)
    env = {"CELERY_VISIBILITY_TIMEOUT_SECONDS": "2", "CELERY_VISIBILITY_TIMEOUT_CHECK": "0"}
    with celery_worker(queues="allocation", concurrency=1, name="heir", env=env) as heir:
        assert wait_for(lambda: live(second) == 1 and r.llen(inflight) == 0, 60), output(heir)
        # The joins' next calls find both rooms placed, on the node.
        for room in (first, second):
            answer = join(room)
            assert answer.status_code == 200 and answer.json()["node_url"] == node.url

    for room in (first, second):
        assert Allocation.objects.filter(room=room).count() == 1 and live(room) == 1
    node.refresh_from_db()
    assert node.reserved_participants == first.expected_size + second.expected_size
    assert not PlacementRequest.objects.exists()
