"""Personal data: an agent downloads everything held about them and nothing of anyone
else; the privacy page states the real retention."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audit.actor import Actor
from audit.models import AuditEvent
from audit.services import audit_record
from tests.factories import RoomFactory
from tests.usage_scenes import meeting, stay

pytestmark = pytest.mark.django_db


def browser(agent=None) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    if agent is not None:
        client.force_login(agent)
    return client


@pytest.fixture
def scene(world):
    """Rooms, sessions and audit events of agent A and of agent B."""
    now = timezone.now()
    for agent, slug in ((world.agent_a, "aaa-aaaa-aaa"), (world.agent_b, "bbb-bbbb-bbb")):
        room = RoomFactory(slug=slug, name=f"Room of {agent.email}", owner=agent)
        m = meeting(agent.ministry, now - timedelta(hours=2), now - timedelta(hours=1))
        stay(m, agent, now - timedelta(hours=2), now - timedelta(hours=1))
        audit_record(actor=Actor(user=agent, label=agent.email), action="room.create", target=room)
    invited = RoomFactory(slug="ccc-cccc-ccc", name="Invitation", owner=world.agent_b)
    invited.invitees.add(world.agent_a)
    audit_record(actor=Actor.system("tests"), action="agent.update", target=world.agent_a)
    return world


def test_download_holds_the_agents_data_and_nothing_of_another(scene):
    """Profile, rooms owned and invited to, sessions, audit events as actor and target;
    no trace of agent B; the export is itself audited."""
    response = browser(scene.agent_a).post("/console/mes-donnees/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert "attachment" in response["Content-Disposition"]
    data = json.loads(response.content)
    assert data["profile"]["email"] == scene.agent_a.email
    assert [r["slug"] for r in data["rooms_owned"]] == ["aaa-aaaa-aaa"]
    assert [r["slug"] for r in data["rooms_invited"]] == ["ccc-cccc-ccc"]
    assert len(data["participant_sessions"]) == 1
    assert {e["action"] for e in data["audit_events"]} == {"room.create", "agent.update"}
    text = response.content.decode()
    assert scene.agent_b.email not in text and str(scene.agent_b.pk) not in text
    assert "bbb-bbbb-bbb" not in text
    assert AuditEvent.objects.filter(
        action="agent.personal_data_export", object_id=str(scene.agent_a.pk)
    ).exists()


def test_pseudonymised_sessions_are_not_in_the_download(scene):
    """Once pseudonymised, a session is no longer the agent's."""
    from rooms.models import ParticipantSession

    ParticipantSession.objects.filter(agent=scene.agent_a).update(
        agent=None, pseudonymised_at=timezone.now()
    )
    data = json.loads(browser(scene.agent_a).post("/console/mes-donnees/").content)
    assert data["participant_sessions"] == []


def test_my_data_page_needs_a_login(scene):
    """Anonymous callers are sent to the login page; agents see the download button."""
    assert browser().get("/console/mes-donnees/").status_code == 302
    assert browser().post("/console/mes-donnees/").status_code == 302
    page = browser(scene.agent_a).get("/console/mes-donnees/")
    assert page.status_code == 200 and b'id="download-my-data"' in page.content


def test_privacy_page_states_the_real_retention(scene, settings):
    """Public; shows each ministry's retention and the purge delay from the settings."""
    settings.USAGE_PURGE_AFTER_DAYS = 123
    scene.a.retention_days = 45
    scene.a.save()
    page = browser().get("/console/confidentialite/")
    assert page.status_code == 200
    assert b'data-days="45"' in page.content and "123 jours plus tard" in page.content.decode()
    mine = browser(scene.agent_a).get("/console/confidentialite/").content.decode()
    assert "Liées à vous pendant 45 jours après la réunion" in mine
    assert 'id="footer-my-data"' in mine and 'id="footer-privacy"' in mine
