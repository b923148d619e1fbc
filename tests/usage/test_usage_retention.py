"""Retention of participant sessions: pseudonymised after the ministry's retention,
deleted later, aggregates untouched; dry run changes nothing; a rerun does nothing."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from rooms.models import MeetingSession, ParticipantSession
from tests.factories import AgentFactory
from usage.days import local_day
from usage.models import DailyUsage
from usage.rollup import rollup_days

pytestmark = pytest.mark.django_db


@pytest.fixture
def aged(world):
    """A's retention is 30 days (purge 365 days later), B's 400. Sessions of A: one
    recent, one 40 days old, one 500 days old; of B: one 40 days old."""
    from tests.usage_scenes import meeting, stay

    world.a.retention_days = 30
    world.a.save()
    world.b.retention_days = 400
    world.b.save()
    now = timezone.now()
    a1 = AgentFactory(ministry=world.a, organizational_unit="U1")
    b1 = AgentFactory(ministry=world.b)
    sessions = {}
    for name, agent, age in [
        ("recent", a1, 2),
        ("old", a1, 40),
        ("ancient", a1, 500),
        ("b_old", b1, 40),
    ]:
        start = now - timedelta(days=age, hours=2)
        m = meeting(agent.ministry, start, start + timedelta(hours=1))
        sessions[name] = stay(m, agent, start, start + timedelta(minutes=30))
    world.sessions = sessions
    world.a1 = a1
    return world


def state():
    return sorted(
        ParticipantSession.objects.values_list("pk", "agent_id", "identity", "pseudonymised_at")
    )


def test_dry_run_counts_and_changes_nothing(aged):
    """The dry run says per ministry what it would do and writes nothing."""
    before, events = state(), AuditEvent.objects.count()
    out = io.StringIO()
    call_command("usage_retention", "--dry-run", stdout=out)
    text = out.getvalue()
    assert (
        "alpha (retention 30 days): 1 sessions would be pseudonymised, 1 would be deleted, "
        "1 meetings would be deleted" in text
    )
    assert (
        "bravo (retention 400 days): 0 sessions would be pseudonymised, 0 would be deleted" in text
    )
    assert state() == before
    assert AuditEvent.objects.count() == events


def test_real_run_pseudonymises_deletes_and_audits_then_does_nothing(aged):
    """Past retention: agent unlinked, identity pseudonymised, unit kept; past the purge:
    deleted with its meeting; one audit event for A; a second run changes nothing."""
    s = aged.sessions
    out = io.StringIO()
    call_command("usage_retention", stdout=out)
    assert (
        "alpha (retention 30 days): 1 sessions were pseudonymised, 1 were deleted" in out.getvalue()
    )
    old = ParticipantSession.objects.get(pk=s["old"].pk)
    assert old.agent_id is None and old.pseudonymised_at is not None
    assert old.identity.startswith("agent-") and str(aged.a1.pk) not in old.identity
    assert old.organizational_unit == "U1" and old.ministry_id == aged.a.pk
    assert not ParticipantSession.objects.filter(pk=s["ancient"].pk).exists()
    assert not MeetingSession.objects.filter(pk=s["ancient"].meeting_id).exists()
    assert ParticipantSession.objects.get(pk=s["recent"].pk).agent_id == aged.a1.pk
    assert ParticipantSession.objects.get(pk=s["b_old"].pk).agent_id is not None
    events = AuditEvent.objects.filter(action="usage.retention_apply")
    assert [(e.ministry_id, e.data["pseudonymised"], e.data["deleted"]) for e in events] == [
        (aged.a.pk, 1, 1)
    ]
    after = state()
    call_command("usage_retention", stdout=io.StringIO())
    assert state() == after
    assert AuditEvent.objects.filter(action="usage.retention_apply").count() == 1


def test_aggregates_stay_and_a_rerollup_gives_the_same_figures(aged):
    """DailyUsage rows are untouched by retention; rolling up a pseudonymised day again
    gives the same figures (agents counted by their pseudonym)."""
    old_day = local_day(aged.sessions["old"].joined_at)
    ancient_day = local_day(aged.sessions["ancient"].joined_at)
    rollup_days(ancient_day, timezone.localdate(), force=True)
    figures = list(DailyUsage.objects.order_by("pk").values())
    call_command("usage_retention", stdout=io.StringIO())
    assert list(DailyUsage.objects.order_by("pk").values()) == figures

    def day(d):
        return sorted(
            DailyUsage.objects.filter(day=d).values_list(
                "ministry_id",
                "organizational_unit",
                "meetings",
                "participant_minutes",
                "agents_in_meetings",
                "peak_concurrent",
            ),
            key=str,
        )

    before = day(old_day)
    rollup_days(old_day, old_day)
    assert day(old_day) == before
    assert any(row[4] == 1 for row in before)


def test_the_task_applies_retention(aged):
    """The beat task runs the real thing."""
    from usage.tasks import usage_retention

    assert usage_retention.delay().get() == {
        "pseudonymised": 1,
        "deleted": 1,
        "meetings_deleted": 1,
    }
