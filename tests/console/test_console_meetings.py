"""Console pages of meetings: rooms (create, join) and operators' media nodes."""

import pytest
from django.test import Client

from media_nodes.models import MediaNode
from rooms.models import Room
from tests.factories import MediaNodeFactory, MeetingSessionFactory, ParticipantSessionFactory

pytestmark = pytest.mark.django_db


def browser(agent):
    client = Client(HTTP_ACCEPT_LANGUAGE="fr")
    client.force_login(agent)
    return client


def test_agent_creates_and_joins_a_room_in_french(world):
    MediaNodeFactory(name="paris-1")
    page = browser(world.agent_a).get("/console/reunions/")
    assert page.status_code == 200 and "Réunions" in page.content.decode()
    created = browser(world.agent_a).post(
        "/console/reunions/", {"name": "Comité", "access": "ministry", "expected_size": "8"}
    )
    room = Room.objects.get()
    assert created.status_code == 302 and created["Location"].endswith(f"/{room.slug}/")
    joined = browser(world.agent_a).post(f"/console/reunions/{room.slug}/")
    assert "http://127.0.0.1:1/paris-1" in joined.content.decode()
    assert MediaNode.objects.get().reserved_participants == 8
    assert browser(world.agent_b).get(f"/console/reunions/{room.slug}/").status_code == 403


def test_bad_room_input_shows_a_french_error_and_writes_nothing(world):
    page = browser(world.agent_a).post("/console/reunions/", {"name": "", "expected_size": "1"})
    assert page.status_code == 200 and 'id="room-error"' in page.content.decode()
    assert not Room.objects.exists()


def test_no_node_french_message_on_join(world):
    browser(world.agent_a).post("/console/reunions/", {"name": "Comité"})
    room = Room.objects.get()
    page = browser(world.agent_a).post(f"/console/reunions/{room.slug}/").content.decode()
    assert "Aucun serveur de visioconférence" in page


def test_nodes_page_for_operators_only(world):
    MediaNodeFactory(name="paris-1")
    assert browser(world.admin_a).get("/console/noeuds/").status_code == 403
    assert (
        browser(world.auditor_a)
        .post("/console/noeuds/paris-1/etat/", {"state": "cordoned"})
        .status_code
        == 403
    )
    assert MediaNode.objects.get().state == "active"
    page = browser(world.operator).get("/console/noeuds/")
    assert "paris-1" in page.content.decode() and "secret" not in page.content.decode()
    browser(world.operator).post("/console/noeuds/paris-1/etat/", {"state": "draining"})
    node = MediaNode.objects.get()
    assert node.state == "draining" and node.drain_deadline is not None


def test_checklist_first_meeting_held_once_someone_left_a_meeting(world):
    from django.utils import timezone

    from usage.selectors import ministry_checklist

    def held(ministry):
        steps = {str(label): done for label, done in ministry_checklist(ministry=ministry)}
        return steps["First meeting held"]

    assert not held(world.a)
    now = timezone.now()
    meeting = MeetingSessionFactory(
        room_name="x", ministry=world.a, livekit_sid="RM_1", started_at=now
    )
    session = ParticipantSessionFactory(
        meeting=meeting, identity="i", participant_sid="PA_1", joined_at=now
    )
    assert not held(world.a)  # still in the meeting
    session.left_at = now
    session.save()
    assert held(world.a) and not held(world.b)
