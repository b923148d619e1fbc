"""Usage and rollout API: tenant scope (an auditor of A sees nothing of B, a national
auditor sees all, a plain agent an empty list), writes refused, forecast statuses."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from accounts.models import RolloutMilestone
from tests.factories import AgentFactory
from tests.support.clients import client_as, client_with_token
from tests.usage_scenes import at, meeting, stay
from usage.rollup import rollup_days
from usage.selectors import rollout_forecast

pytestmark = pytest.mark.django_db


@pytest.fixture
def usage(world):
    """A day of usage in A (unit U1) and in B, rolled up."""
    d = timezone.localdate() - timedelta(days=3)
    a1 = AgentFactory(ministry=world.a, organizational_unit="U1")
    b1 = AgentFactory(ministry=world.b)
    stay(meeting(world.a, at(d, 9), at(d, 10)), a1, at(d, 9), at(d, 10))
    stay(meeting(world.b, at(d, 11), at(d, 12)), b1, at(d, 11), at(d, 11, 30))
    rollup_days(d, d)
    world.day = d
    return world


def scopes(response):
    assert response.status_code == 200, response.content
    return sorted(
        (r["ministry"] or "", r["organizational_unit"]) for r in response.json()["results"]
    )


def test_auditor_of_a_reads_only_a(usage):
    """Rows of A only: no row of B, no national row (it would reveal B's totals)."""
    client = client_as(usage.auditor_a)
    assert scopes(client.get("/api/v1/usage/daily/")) == [("alpha", ""), ("alpha", "U1")]
    assert scopes(client.get("/api/v1/usage/daily/?ministry=bravo")) == []
    token = client_with_token(usage.admin_a, usage.a, "auditor")
    assert scopes(token.get("/api/v1/usage/daily/")) == [("alpha", ""), ("alpha", "U1")]
    assert scopes(client_as(usage.admin_b).get("/api/v1/usage/daily/")) == [("bravo", "")]


def test_national_auditor_and_operator_read_everything(usage):
    """Every ministry's rows and the national row."""
    for caller in (usage.national_auditor, usage.operator):
        assert scopes(client_as(caller).get("/api/v1/usage/daily/")) == [
            ("", ""),
            ("alpha", ""),
            ("alpha", "U1"),
            ("bravo", ""),
        ]


def test_plain_agent_reads_an_empty_list_and_anonymous_is_refused(usage):
    """An agent without a role gets nothing (not even their ministry); anonymous: 401/403."""
    assert scopes(client_as(usage.agent_a).get("/api/v1/usage/daily/")) == []
    assert client_as(usage.agent_a).get("/api/v1/rollout/").json() == []
    assert client_as(None).get("/api/v1/usage/daily/").status_code in (401, 403)
    assert client_as(None).get("/api/v1/rollout/").status_code in (401, 403)


def test_filters(usage):
    """ministry, unit, from/to and level narrow the rows; a bad date is a 400."""
    client = client_as(usage.national_auditor)
    d = usage.day.isoformat()
    assert scopes(client.get("/api/v1/usage/daily/?ministry=alpha")) == [
        ("alpha", ""),
        ("alpha", "U1"),
    ]
    assert scopes(client.get("/api/v1/usage/daily/?unit=U1")) == [("alpha", "U1")]
    assert scopes(client.get("/api/v1/usage/daily/?level=national")) == [("", "")]
    assert len(scopes(client.get(f"/api/v1/usage/daily/?from={d}&to={d}"))) == 4
    later = (usage.day + timedelta(days=1)).isoformat()
    assert scopes(client.get(f"/api/v1/usage/daily/?from={later}")) == []
    response = client.get("/api/v1/usage/daily/?from=yesterday")
    assert response.status_code == 400 and "from" in response.json()
    row = client.get("/api/v1/usage/daily/?level=national").json()["results"][0]
    assert row["meetings"] == 2 and row["participant_minutes"] == 90


@pytest.mark.parametrize("caller", ["operator", "admin_a", "auditor_a", "agent_a"])
def test_writes_are_refused(usage, caller):
    """POST, PUT, PATCH, DELETE: 405 for everyone."""
    client = client_as(getattr(usage, caller))
    for url in ("/api/v1/usage/daily/", "/api/v1/rollout/"):
        assert client.post(url, {}).status_code == 405
        assert client.delete(url).status_code == 405
        assert client.put(url, {}).status_code == 405


def test_rollout_scope(usage):
    """Auditor of A: A only; national auditor: every ministry and the national entry."""
    entries = client_as(usage.auditor_a).get("/api/v1/rollout/").json()
    assert [e["ministry"] for e in entries] == ["alpha"]
    national = client_as(usage.national_auditor).get("/api/v1/rollout/").json()
    assert sorted(e["ministry"] or "" for e in national) == ["", "alpha", "bravo"]


def test_rollout_figures(usage):
    """Provisioned and active agents, goal, milestones, seats and savings of A."""
    a = usage.a
    a.rollout_target_agents = 4
    a.rollout_target_date = timezone.localdate() + timedelta(days=100)
    a.save()
    RolloutMilestone.objects.create(ministry=a, due_on=date(2020, 1, 1), target_agents=1)
    agent = AgentFactory(ministry=a)
    agent.last_login = timezone.now()
    agent.save()
    entry = client_as(usage.auditor_a).get("/api/v1/rollout/").json()[0]
    # admin_a, auditor_a, agent_a, a1 (fixture) and the new agent
    assert entry["agents_with_seat"] == 5
    assert entry["agents_logged_in"] == 1
    assert entry["progress_percent"] == 25
    assert entry["milestones"][0]["reached"] is True
    assert entry["weekly_agents_in_meetings"][-1] == 1  # a1's session three days ago
    assert entry["seats"] == 1000 and entry["agents_with_seat"] == 5
    assert entry["yearly_savings_eur"] == f"{5 * 100 - 1000 * 12:.2f}"
    assert entry["status"] in ("on_track", "at_risk", "late")
    national = client_as(usage.operator).get("/api/v1/rollout/").json()[-1]
    assert national["ministry"] is None and national["target_agents"] == 4
    assert national["seats"] == 2000


TODAY = date(2026, 6, 1)


@pytest.mark.parametrize(
    ("active", "weekly", "goal_in_days", "status", "projected_in_days"),
    [
        (100, [100] * 9, 10, "on_track", 0),  # target reached
        (50, [10 * i for i in range(9)], 40, "on_track", 35),  # +10/week: 50 left, 35 days
        (50, [10 * i for i in range(9)], 35, "on_track", 35),  # exactly on the goal date
        (50, [10 * i for i in range(9)], -1, "late", 35),  # goal date passed
        (50, [0, 1, 2, 3, 4, 5, 6, 7, 8], 300, "late", 350),  # +1/week: 350 days
        (50, [0, 1, 2, 3, 4, 5, 6, 7, 8], 320, "at_risk", 350),  # within 30 days after
        (50, [50] * 9, 300, "late", None),  # no progress
        (50, [80 - 10 * i for i in range(9)], 300, "late", None),  # falling
    ],
)
def test_forecast_statuses(active, weekly, goal_in_days, status, projected_in_days):
    """Least-squares trend over 9 weekly points; on track, at risk (≤30 days late) or late."""
    target = 100
    forecast = rollout_forecast(
        active=active,
        target=target,
        target_date=TODAY + timedelta(days=goal_in_days),
        weekly=weekly,
        today=TODAY,
    )
    assert forecast.status == status
    if projected_in_days is None:
        assert forecast.projected_date is None
    else:
        assert forecast.projected_date == TODAY + timedelta(days=projected_in_days)


def test_forecast_without_goal_has_no_status():
    """No target: the trend only."""
    forecast = rollout_forecast(
        active=5, target=None, target_date=None, weekly=[0, 7, 14], today=TODAY
    )
    assert forecast.status is None and forecast.trend_per_week == 7
