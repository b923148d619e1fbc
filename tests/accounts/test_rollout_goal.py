"""Rollout goal, milestones and residency tags: onboarding, reading and updating them."""

import pytest

from accounts.models import Ministry, MinistryDomain, PendingRoleGrant, RolloutMilestone
from audit.models import AuditEvent
from licensing.models import LicencePool
from tests.support.clients import client_as

pytestmark = pytest.mark.django_db

ONBOARDING = {
    "code": "interieur",
    "name": "Ministère de l'Intérieur",
    "siren": "110014016",
    "domains": ["interieur.gouv.fr"],
    "sirets": ["11001401600015"],
    "admins": ["cheffe.projet@interieur.gouv.fr"],
    "licence_pool": {
        "starts_on": "2025-01-01",
        "ends_on": "2027-12-31",
        "seats": 1000,
        "foreign_price_eur": "100.00",
        "sovereign_cost_eur": "12.00",
    },
    "rollout_target_agents": 900,
    "rollout_target_date": "2027-06-30",
    "milestones": [
        {"due_on": "2026-06-30", "target_agents": 300, "label": "Cabinet"},
        {"due_on": "2026-01-31", "target_agents": 50, "label": "Pilot"},
        {"due_on": "2027-06-30", "target_agents": 900},
    ],
    "residency_tags": ["secnumcloud", "region-idf"],
}


def written():
    """Everything an onboarding writes, counted."""
    return (
        Ministry.objects.count(),
        MinistryDomain.objects.count(),
        RolloutMilestone.objects.count(),
        LicencePool.objects.count(),
        PendingRoleGrant.objects.count(),
        AuditEvent.objects.count(),
    )


def test_onboarding_with_goal_milestones_and_tags(world):
    """The goal, milestones (sorted by date) and tags are written, audited and read back."""
    response = client_as(world.operator).post("/api/v1/onboardings/", ONBOARDING, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["rollout_target_agents"] == 900
    assert body["rollout_target_date"] == "2027-06-30"
    assert body["residency_tags"] == ["secnumcloud", "region-idf"]
    assert [(m["due_on"], m["target_agents"]) for m in body["milestones"]] == [
        ("2026-01-31", 50),
        ("2026-06-30", 300),
        ("2027-06-30", 900),
    ]
    ministry = Ministry.objects.get(code="interieur")
    assert list(ministry.milestones.values_list("label", flat=True)) == ["Pilot", "Cabinet", ""]
    event = AuditEvent.objects.get(action="ministry.create")
    assert event.data["rollout_target_agents"] == 900
    assert event.data["milestones"][0] == {
        "due_on": "2026-01-31",
        "target_agents": 50,
        "label": "Pilot",
    }
    read = client_as(world.national_auditor).get("/api/v1/ministries/interieur/").json()
    assert read["milestones"] == body["milestones"]


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            {
                "milestones": [
                    {"due_on": "2026-01-31", "target_agents": 300},
                    {"due_on": "2026-06-30", "target_agents": 200},
                ]
            },
            "milestones",
            "never go down",
        ),
        (
            {"milestones": [{"due_on": "2027-07-01", "target_agents": 10}]},
            "milestones",
            "after the goal's date",
        ),
        (
            {
                "milestones": [
                    {"due_on": "2026-01-31", "target_agents": 10},
                    {"due_on": "2026-01-31", "target_agents": 20},
                ]
            },
            "milestones",
            "Two milestones fall on 2026-01-31",
        ),
        (
            {"milestones": [{"due_on": "2026-01-31", "target_agents": 0}]},
            "milestones",
            "at least one agent",
        ),
        (
            {"milestones": [{"due_on": "2026-01-31", "target_agents": 901}]},
            "milestones",
            "more agents than the goal",
        ),
        ({"rollout_target_agents": 0}, "rollout_target_agents", "greater than or equal to 1"),
        ({"rollout_target_date": None}, "rollout_target_date", "both"),
        ({"residency_tags": ["SecNumCloud"]}, "residency_tags", "not a valid tag"),
        ({"residency_tags": ["sec numcloud"]}, "residency_tags", "not a valid tag"),
        ({"residency_tags": ["hds", "hds"]}, "residency_tags", "listed twice"),
    ],
)
def test_bad_goal_or_tags_are_refused_and_nothing_is_written(world, change, field, message):
    """Each bad goal, milestone or tag: 400 naming the field and the reason, nothing written."""
    before = written()
    response = client_as(world.operator).post(
        "/api/v1/onboardings/", {**ONBOARDING, **change}, format="json"
    )
    assert response.status_code == 400, response.json()
    assert message in str(response.json()[field])
    assert written() == before


def test_milestones_without_a_goal_are_refused(world):
    """Milestones need a goal to aim at."""
    data = {k: v for k, v in ONBOARDING.items() if not k.startswith("rollout_")}
    response = client_as(world.operator).post("/api/v1/onboardings/", data, format="json")
    assert response.status_code == 400
    assert "before its milestones" in str(response.json()["milestones"])
    assert not Ministry.objects.filter(code="interieur").exists()


def test_operator_updates_goal_and_replaces_milestones(world):
    """PATCH replaces the milestones, checks them against the goal as it will stand."""
    client = client_as(world.operator)
    assert client.post("/api/v1/onboardings/", ONBOARDING, format="json").status_code == 201
    response = client.patch(
        "/api/v1/ministries/interieur/",
        {
            "rollout_target_agents": 2000,
            "milestones": [{"due_on": "2026-12-31", "target_agents": 1000, "label": "Half"}],
        },
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["milestones"] == [
        {"due_on": "2026-12-31", "target_agents": 1000, "label": "Half"}
    ]
    event = AuditEvent.objects.filter(action="ministry.update").latest("created_at")
    assert event.data["rollout_target_agents"] == {"from": 900, "to": 2000}
    assert event.data["milestones"][0]["target_agents"] == 1000
    # Moving the goal's date before an existing milestone is refused.
    response = client.patch(
        "/api/v1/ministries/interieur/", {"rollout_target_date": "2026-06-30"}, format="json"
    )
    assert response.status_code == 400
    assert "after the goal's date" in str(response.json()["milestones"])
    ministry = Ministry.objects.get(code="interieur")
    assert str(ministry.rollout_target_date) == "2027-06-30"


@pytest.mark.parametrize("caller", ["admin_a", "auditor_a"])
def test_only_operators_change_the_goal(world, caller):
    """A ministry's admins and auditors read the goal but cannot change it."""
    client = client_as(getattr(world, caller))
    assert "milestones" in client.get("/api/v1/ministries/alpha/").json()
    response = client.patch(
        "/api/v1/ministries/alpha/",
        {"rollout_target_agents": 5, "rollout_target_date": "2027-01-01"},
        format="json",
    )
    assert response.status_code == 403
    assert Ministry.objects.get(code="alpha").rollout_target_agents is None
