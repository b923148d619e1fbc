"""LiveKit webhooks: signed events become meeting and participant sessions, observed
load and released allocations; replays count once; anything unsigned writes nothing.

Bodies and signatures are built as a node builds them (``tests.support.webhooks``):
the event as protobuf JSON, and a JWT from the node's key and secret whose
``sha256`` claim is the body's digest.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from google.protobuf.json_format import MessageToJson
from livekit import api

from media_nodes.allocations import allocation_live_get, allocation_place
from media_nodes.models import Allocation, MediaNode
from rooms.models import MeetingSession, ParticipantSession, WebhookReceipt
from tests.factories import MediaNodeFactory, room_created_by
from tests.support.webhooks import URL, deliver, make_event, post, sign, signed

# -- Helpers ------------------------------------------------------------------------------


def fresh(node):
    return MediaNode.objects.get(pk=node.pk)


def placed_room(agent, node, size=10):
    """A room of ``agent``'s ministry with its live allocation on ``node``."""
    room = room_created_by(agent, size=size)
    allocation_place(room_id=room.pk)
    allocation = allocation_live_get(room_id=room.pk)
    assert allocation.node_id == node.pk
    return room, allocation


def nothing_written(node, observed=0):
    return (
        not WebhookReceipt.objects.exists()
        and not MeetingSession.objects.exists()
        and not ParticipantSession.objects.exists()
        and fresh(node).observed_participants == observed
    )


# -- Valid events ------------------------------------------------------------------------


@pytest.mark.django_db
def test_meeting_lifecycle(world):
    """A meeting's events open and close its sessions, move the node's observed load
    and release the room's allocation when it finishes."""
    node = MediaNodeFactory(name="n1")
    room, allocation = placed_room(world.agent_a, node)
    world.agent_b.sub = "sub-agent-b"
    world.agent_b.save()
    name = room.slug

    assert deliver(make_event("room_started", room_name=name), node).json() == {
        "status": "processed"
    }
    meeting = MeetingSession.objects.get()
    assert (meeting.room, meeting.ministry, meeting.node, meeting.livekit_sid) == (
        room,
        world.a,
        node,
        "RM_one",
    )
    assert meeting.ended_at is None

    # Before first login the identity is the agent's id; afterwards, their sub.
    deliver(make_event("participant_joined", room_name=name, identity=str(world.agent_a.pk)), node)
    deliver(make_event("participant_joined", room_name=name, identity="sub-agent-b"), node)
    deliver(make_event("participant_joined", room_name=name, identity="guest"), node)
    assert fresh(node).observed_participants == 3
    sessions = {s.identity: s for s in ParticipantSession.objects.all()}
    assert sessions[str(world.agent_a.pk)].agent == world.agent_a
    assert sessions[str(world.agent_a.pk)].ministry == world.a
    assert sessions["sub-agent-b"].agent == world.agent_b
    assert sessions["sub-agent-b"].ministry == world.b
    assert sessions["guest"].agent is None
    meeting.refresh_from_db()
    assert meeting.peak_participants == 3

    left_at = int(time.time()) + 90
    deliver(make_event("participant_left", room_name=name, identity="guest", at=left_at), node)
    guest = ParticipantSession.objects.get(identity="guest")
    assert guest.left_at is not None
    assert 89 <= guest.duration_seconds <= 91
    assert fresh(node).observed_participants == 2

    deliver(make_event("room_finished", room_name=name, at=left_at + 10), node)
    meeting.refresh_from_db()
    assert meeting.ended_at is not None
    assert meeting.peak_participants == 3
    # Those still in are let go with the room.
    assert not ParticipantSession.objects.filter(left_at__isnull=True).exists()
    assert all(s.duration_seconds is not None for s in ParticipantSession.objects.all())
    node = fresh(node)
    assert node.observed_participants == 0
    assert node.reserved_participants == 0
    allocation.refresh_from_db()
    assert allocation.closed_at is not None
    assert allocation.close_reason == Allocation.Reason.FINISHED
    assert WebhookReceipt.objects.count() == 6


@pytest.mark.django_db
def test_replay_counted_once(world):
    """A retried delivery (same event id) answers 200 duplicate and changes nothing."""
    node = MediaNodeFactory(name="n1")
    body, auth = signed(make_event("participant_joined", identity="someone"), node)

    assert post(body, auth).json() == {"status": "processed"}
    assert post(body, auth).json() == {"status": "duplicate"}
    assert post(body, sign(body, key=node.api_key, secret=node.api_secret)).status_code == 200

    assert fresh(node).observed_participants == 1
    assert ParticipantSession.objects.count() == 1
    receipt = WebhookReceipt.objects.get()
    assert (receipt.node, receipt.event_type) == (node, "participant_joined")


@pytest.mark.django_db
def test_room_finished_replay_releases_once(world):
    """A replayed room_finished does not touch the room's next allocation."""
    node = MediaNodeFactory(name="n1")
    room, first = placed_room(world.agent_a, node)
    body, auth = signed(make_event("room_finished", room_name=room.slug), node)
    assert post(body, auth).json() == {"status": "processed"}
    allocation_place(room_id=room.pk)
    second = allocation_live_get(room_id=room.pk)
    assert second.pk != first.pk

    assert post(body, auth).json() == {"status": "duplicate"}
    second.refresh_from_db()
    assert second.closed_at is None
    assert fresh(node).reserved_participants == room.expected_size


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_counted_once(world):
    """Eight simultaneous deliveries of one event: one applies it, seven see a duplicate."""
    node = MediaNodeFactory(name="n1")
    body, auth = signed(make_event("participant_joined", identity="racer"), node)
    barrier = threading.Barrier(8)
    answers = []

    def deliver_once():
        try:
            client = Client()
            barrier.wait()
            response = post(body, auth, client=client)
            answers.append((response.status_code, response.json()["status"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver_once) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(answers) == [(200, "duplicate")] * 7 + [(200, "processed")]
    assert WebhookReceipt.objects.count() == 1
    assert ParticipantSession.objects.count() == 1
    assert fresh(node).observed_participants == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_joins_of_one_meeting(world):
    """Distinct participants joining at once: one meeting session, every join counted."""
    node = MediaNodeFactory(name="n1")
    bodies = [signed(make_event("participant_joined", identity=f"p{i}"), node) for i in range(8)]
    barrier = threading.Barrier(len(bodies))
    statuses = []

    def deliver_once(body, auth):
        try:
            client = Client()
            barrier.wait()
            statuses.append(post(body, auth, client=client).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver_once, args=pair) for pair in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses == [200] * 8
    meeting = MeetingSession.objects.get()
    assert meeting.participants.count() == 8
    assert meeting.peak_participants == 8
    assert fresh(node).observed_participants == 8


@pytest.mark.django_db
def test_out_of_order_events(world):
    """A join before room_started opens the meeting; a leave before its join records
    the stay and does not move the load."""
    node = MediaNodeFactory(name="n1")
    now = int(time.time())
    deliver(make_event("participant_joined", identity="early", at=now), node)
    meeting = MeetingSession.objects.get()
    assert fresh(node).observed_participants == 1

    deliver(make_event("room_started", at=now - 5), node)
    assert MeetingSession.objects.count() == 1
    meeting.refresh_from_db()
    assert meeting.started_at.timestamp() == now - 5

    deliver(make_event("participant_left", identity="late", at=now + 60), node)
    deliver(make_event("participant_joined", identity="late", at=now), node)
    late = ParticipantSession.objects.get(identity="late")
    assert late.left_at is not None
    assert fresh(node).observed_participants == 1
    assert ParticipantSession.objects.filter(left_at__isnull=True).count() == 1


@pytest.mark.django_db
def test_unknown_room_recorded_by_name(world):
    """A room the control plane does not know is still recorded, by its name."""
    node = MediaNodeFactory(name="n1")
    deliver(make_event("room_started", room_name="not-ours"), node)
    meeting = MeetingSession.objects.get()
    assert (meeting.room, meeting.ministry, meeting.room_name) == (None, None, "not-ours")
    assert deliver(make_event("room_finished", room_name="not-ours"), node).status_code == 200


@pytest.mark.django_db
def test_observed_load_never_negative(world):
    """Leaves the node reports for joins it never reported do not take the load below 0."""
    node = MediaNodeFactory(name="n1")
    deliver(make_event("participant_joined", identity="x"), node)
    MediaNode.objects.filter(pk=node.pk).update(observed_participants=0)  # reconciled
    deliver(make_event("participant_left", identity="x"), node)
    assert fresh(node).observed_participants == 0


@pytest.mark.django_db
def test_unknown_event_ignored(world):
    """Events the control plane does not use answer 200 and write nothing."""
    node = MediaNodeFactory(name="n1")
    response = deliver(make_event("track_published", identity="x"), node)
    assert response.status_code == 200
    assert response.json() == {"status": "ignored"}
    assert nothing_written(node)


@pytest.mark.django_db
def test_nodes_sharing_a_key(world):
    """Nodes sharing an API key are told apart by their secrets."""
    first = MediaNodeFactory(name="n1", api_key="shared")
    second = MediaNodeFactory(name="n2", api_key="shared")
    assert deliver(make_event("participant_joined", identity="x"), second).status_code == 200
    assert fresh(first).observed_participants == 0
    assert fresh(second).observed_participants == 1
    assert WebhookReceipt.objects.get().node == second


# -- Allocations --------------------------------------------------------------------------


@pytest.mark.django_db
def test_room_finished_elsewhere_keeps_allocation(world):
    """room_finished from a node that does not host the room releases nothing."""
    host = MediaNodeFactory(name="host")
    room, allocation = placed_room(world.agent_a, host)
    other = MediaNodeFactory(name="other")

    assert deliver(make_event("room_finished", room_name=room.slug), other).status_code == 200
    allocation.refresh_from_db()
    assert allocation.closed_at is None
    assert fresh(host).reserved_participants == room.expected_size


@pytest.mark.django_db
def test_late_room_finished_keeps_newer_allocation(world):
    """A room_finished delivered long after the meeting ended does not close the
    room's newer placement on the same node."""
    node = MediaNodeFactory(name="n1")
    room, allocation = placed_room(world.agent_a, node)
    long_ago = int(time.time()) - 3600
    deliver(make_event("room_finished", room_name=room.slug, at=long_ago), node)
    allocation.refresh_from_db()
    assert allocation.closed_at is None


# -- Refusals -----------------------------------------------------------------------------


REFUSALS = {
    "body changed after signing": lambda node, other, body: (
        body.replace("someone", "intruder"),
        sign(body, key=node.api_key, secret=node.api_secret),
    ),
    "another node's secret": lambda node, other, body: (
        body,
        sign(body, key=node.api_key, secret=other.api_secret),
    ),
    "unknown key": lambda node, other, body: (
        body,
        sign(body, key="nobody", secret=node.api_secret),
    ),
    "missing header": lambda node, other, body: (body, None),
    "empty header": lambda node, other, body: (body, ""),
    "not a token": lambda node, other, body: (body, "Bearer not-a-jwt"),
    "expired token": lambda node, other, body: (
        body,
        sign(body, key=node.api_key, secret=node.api_secret, ttl=timedelta(minutes=-5)),
    ),
    "no digest claim": lambda node, other, body: (
        body,
        api.AccessToken(node.api_key, node.api_secret).to_jwt(),
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_with_401_and_nothing_written(world, case):
    """Deliveries whose signature does not hold are refused with 401 and write nothing."""
    node = MediaNodeFactory(name="n1")
    other = MediaNodeFactory(name="n2")
    body = MessageToJson(make_event("participant_joined", identity="someone"))
    body, auth = REFUSALS[case](node, other, body)

    response = post(body, auth)

    assert response.status_code == 401
    assert set(response.json()) == {"error"}
    assert nothing_written(node)
    assert fresh(other).observed_participants == 0


@pytest.mark.django_db
def test_signed_garbage_is_400(world):
    """A correctly signed body that is not a LiveKit event is a 400, with nothing written."""
    node = MediaNodeFactory(name="n1")
    for body in ["{not json", '{"event": "room_started", "id": 5}', "{}"]:
        response = post(body, sign(body, key=node.api_key, secret=node.api_secret))
        assert response.status_code == 400, body
    event = make_event("participant_joined", identity="x")
    event.room.sid = ""
    assert deliver(event, node).status_code == 400
    assert nothing_written(node)


@pytest.mark.django_db
def test_get_not_allowed(client):
    """Only POST is accepted."""
    response = client.get(URL)
    assert response.status_code == 405


@pytest.mark.django_db
def test_oversize_body_refused(world):
    """A body over the limit is refused with 413 before anything else."""
    node = MediaNodeFactory(name="n1")
    event = make_event("room_started")
    event.room.metadata = "x" * (70 * 1024)
    response = deliver(event, node)
    assert response.status_code == 413
    assert nothing_written(node)


# -- End to end with the node simulator -------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_simulated_node_end_to_end(world, live_server):
    """A simulated LiveKit node's own signed webhooks, replay included, drive a meeting
    from start to release through the live server."""
    livekit_sim = pytest.importorskip("devtools.livekit_sim")
    node = MediaNodeFactory(name="sim")
    room, allocation = placed_room(world.agent_a, node)
    with livekit_sim.SimulatedNode(
        node.api_key, node.api_secret, name="sim", webhook_url=live_server.url + URL
    ) as sim:
        sim.join(room.slug, str(world.agent_a.pk))
        sim.join(room.slug, "guest")
        assert sim.flush()
        assert fresh(node).observed_participants == 2

        sim.replay_last_webhook()
        assert sim.flush()
        assert sim.sent_webhooks[-1].status == 200
        assert fresh(node).observed_participants == 2
        assert ParticipantSession.objects.count() == 2

        sim.leave(room.slug, "guest")
        sim.finish(room.slug)
        assert sim.flush()

    assert all(d.delivered for d in sim.sent_webhooks)
    meeting = MeetingSession.objects.get()
    assert (meeting.room, meeting.ministry, meeting.peak_participants) == (room, world.a, 2)
    assert meeting.ended_at is not None
    agent_session = ParticipantSession.objects.get(agent=world.agent_a)
    assert agent_session.duration_seconds is not None
    assert WebhookReceipt.objects.count() == 6  # started, 2 joined, 2 left, finished
    node = fresh(node)
    assert (node.observed_participants, node.reserved_participants) == (0, 0)
    allocation.refresh_from_db()
    assert allocation.close_reason == Allocation.Reason.FINISHED


@pytest.mark.django_db
def test_meeting_span_covers_its_joins(world):
    """A meeting's span always covers its participants' joins, whatever the stamps say
    (the usage roll-up finds a meeting's stays by the meeting's days): a join stamped
    before the start moves the start back, one stamped after the end moves the end on,
    and room_finished never ends a meeting before its last join."""
    node = MediaNodeFactory(name="n1")
    now = int(time.time())
    deliver(make_event("room_started", at=now), node)
    early = make_event("participant_joined", identity="early", at=now)
    early.participant.joined_at = now - 30
    deliver(early, node)
    meeting = MeetingSession.objects.get()
    assert meeting.started_at.timestamp() == now - 30
    stamped_late = make_event("participant_joined", identity="ahead", at=now)
    stamped_late.participant.joined_at = now + 100
    deliver(stamped_late, node)
    deliver(make_event("room_finished", at=now + 50), node)
    meeting.refresh_from_db()
    assert meeting.ended_at.timestamp() == now + 100
    deliver(make_event("participant_joined", identity="after", at=now + 200), node)
    meeting.refresh_from_db()
    after = ParticipantSession.objects.get(identity="after")
    assert meeting.ended_at.timestamp() == now + 200
    assert after.joined_at == after.left_at == meeting.ended_at
    for p in ParticipantSession.objects.all():
        assert meeting.started_at <= p.joined_at <= meeting.ended_at


@pytest.mark.django_db
def test_migration_widens_meetings_to_cover_their_joins(world):
    """Meetings recorded before that rule are widened by the migration, and marked
    changed for the incremental roll-up; a meeting already covering its joins is kept."""
    import importlib

    from django.apps import apps

    from tests.usage_scenes import meeting, stay

    migration = importlib.import_module("rooms.migrations.0005_meeting_spans_cover_joins")
    start = timezone.now() - timedelta(days=3)
    narrow = meeting(None, start, start + timedelta(hours=1))
    stay(narrow, None, start - timedelta(minutes=5), start + timedelta(minutes=10))
    stay(narrow, None, start + timedelta(hours=2), start + timedelta(hours=2))
    fine = meeting(None, start, start + timedelta(hours=1))
    stay(fine, None, start + timedelta(minutes=1), start + timedelta(minutes=2))
    MeetingSession.objects.update(updated_at=start)
    migration.cover(apps, None)
    narrow.refresh_from_db()
    fine.refresh_from_db()
    assert narrow.started_at == start - timedelta(minutes=5)
    assert narrow.ended_at == start + timedelta(hours=2)
    assert narrow.updated_at > start
    assert (fine.started_at, fine.ended_at, fine.updated_at) == (
        start,
        start + timedelta(hours=1),
        start,
    )


@pytest.mark.django_db
def test_old_receipts_are_purged_and_recent_ones_still_stop_replays(world, settings):
    """Beat's nightly purge deletes receipts past WEBHOOK_RECEIPT_KEEP_DAYS, in
    batches, and keeps the recent ones, which still make a replay change nothing."""
    from rooms import tasks

    assert settings.CELERY_BEAT_SCHEDULE["rooms-webhook-receipts-purge"]["task"] == (
        tasks.webhook_receipts_purge.name
    )
    node = MediaNodeFactory(name="n1")
    recent = make_event("participant_joined", identity="recent")
    assert deliver(recent, node).status_code == 200
    old = [
        WebhookReceipt(event_id=f"EV_old_{n}", node=node, event_type="participant_left")
        for n in range(7)
    ]
    WebhookReceipt.objects.bulk_create(old)
    WebhookReceipt.objects.filter(event_id__startswith="EV_old_").update(
        received_at=timezone.now() - timedelta(days=settings.WEBHOOK_RECEIPT_KEEP_DAYS, hours=1)
    )
    tasks.PURGE_BATCH, batch = 3, tasks.PURGE_BATCH
    try:
        assert tasks.webhook_receipts_purge.delay().get() == 7
    finally:
        tasks.PURGE_BATCH = batch
    assert list(WebhookReceipt.objects.values_list("event_id", flat=True)) == [recent.id]
    assert deliver(recent, node).status_code == 200
    assert ParticipantSession.objects.count() == 1
    assert fresh(node).observed_participants == 1
