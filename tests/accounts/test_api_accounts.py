"""Behaviour of the accounts API: ministries, agents, grants, tokens."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Agent, ApiToken, Ministry, MinistryDomain, Role, RoleGrant
from audit.models import AuditEvent
from tests.factories import MinistryDomainFactory
from tests.support.clients import client_as, client_with_token

pytestmark = pytest.mark.django_db

NEW_MINISTRY = {
    "code": "interieur",
    "name": "Ministère de l'Intérieur",
    "siren": "110014016",
    "domains": ["interieur.gouv.fr"],
    "sirets": ["11001401600015"],
    "state": "pilot",
    "residency_tags": ["secnumcloud"],
}


def written():
    """What a refused request must leave untouched."""
    return (
        Ministry.objects.count(),
        MinistryDomain.objects.count(),
        Agent.objects.count(),
        RoleGrant.objects.count(),
        ApiToken.objects.count(),
        AuditEvent.objects.count(),
    )


def test_operator_onboards_a_ministry(world):
    """An operator creates a ministry with its identifiers; it is audited."""
    response = client_as(world.operator).post("/api/v1/ministries/", NEW_MINISTRY, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["domains"] == ["interieur.gouv.fr"]
    assert body["sirets"] == ["11001401600015"]
    assert body["residency_tags"] == ["secnumcloud"]
    event = AuditEvent.objects.get(action="ministry.create")
    assert event.actor_id == world.operator.pk
    assert event.ip == "127.0.0.1"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"siren": "110014017"}, "siren", "check digit"),
        ({"siren": "11001401"}, "siren", "exactly 9 digits"),
        ({"sirets": ["11001401600014"]}, "sirets", "check digit"),
        ({"domains": ["alpha.gouv.fr"]}, "domains", "Already owned by another ministry: alpha"),
        ({"domains": ["x.gouv.fr", "X.gouv.fr"]}, "domains", "listed twice"),
        ({"domains": ["not a domain"]}, "domains", "not a valid"),
        ({"code": "alpha"}, "code", "already exists"),
        ({"state": "closed"}, "state", "not a valid choice"),
    ],
)
def test_bad_ministry_input_is_refused_and_writes_nothing(world, change, field, message):
    """Each bad field gets a 400 naming it and the reason; nothing is written."""
    before = written()
    response = client_as(world.operator).post(
        "/api/v1/ministries/", {**NEW_MINISTRY, **change}, format="json"
    )
    assert response.status_code == 400
    assert message in str(response.json()[field])
    assert written() == before


def test_a_siret_already_owned_is_refused(world):
    """A SIRET belongs to one ministry only."""
    taken = world.a.sirets.get().siret
    response = client_as(world.operator).post(
        "/api/v1/ministries/", {**NEW_MINISTRY, "sirets": [taken]}, format="json"
    )
    assert response.status_code == 400
    assert taken in str(response.json()["sirets"])


def test_the_database_refuses_a_shared_domain(world):
    """Even bypassing the service, two ministries cannot own one domain."""
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        MinistryDomainFactory(ministry=world.b, domain="alpha.gouv.fr")


def test_operator_updates_identifiers(world):
    """A PATCH replaces the domain list and the response shows the new one."""
    response = client_as(world.operator).patch(
        "/api/v1/ministries/alpha/",
        {"domains": ["alpha.gouv.fr", "alpha.fr"], "state": "generalised"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["domains"] == ["alpha.fr", "alpha.gouv.fr"]
    assert Ministry.objects.get(code="alpha").state == "generalised"


def test_admin_creates_an_agent_in_their_ministry(world):
    """A ministry admin provisions an agent whose email is in the ministry's domain."""
    response = client_as(world.admin_a).post(
        "/api/v1/agents/",
        {
            "ministry": "alpha",
            "email": "Jeanne.Doe@alpha.gouv.fr",
            "given_name": "Jeanne",
            "usual_name": "Doe",
            "external_id": "E-1",
            "organizational_unit": "DSI",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    agent = Agent.objects.get(email="jeanne.doe@alpha.gouv.fr")
    assert agent.ministry == world.a
    assert not agent.has_usable_password()
    assert response.json()["abilities"] == {"update": True, "deactivate": True, "reactivate": False}


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"ministry": "alpha", "email": "x@bravo.gouv.fr"}, "email", "not one of the ministry"),
        ({"ministry": "nowhere", "email": "x@alpha.gouv.fr"}, "ministry", "does not exist"),
        ({"ministry": "bravo", "email": "x@bravo.gouv.fr"}, "ministry", "does not exist"),
        ({"ministry": "alpha", "email": "not-an-email"}, "email", "valid email"),
        ({"email": "x@alpha.gouv.fr"}, "ministry", "required"),
    ],
)
def test_bad_agent_input_is_refused_and_writes_nothing(world, payload, field, message):
    """Wrong domain, unknown or foreign ministry, bad email: 400 naming the field."""
    before = written()
    response = client_as(world.admin_a).post("/api/v1/agents/", payload, format="json")
    assert response.status_code == 400
    assert message in str(response.json()[field])
    assert written() == before


def test_duplicate_email_is_refused(world):
    """An email already used by an agent cannot be given to another."""
    response = client_as(world.admin_a).post(
        "/api/v1/agents/",
        {"ministry": "alpha", "email": world.agent_a.email.upper()},
        format="json",
    )
    assert response.status_code == 400
    assert "already exists" in str(response.json()["email"])


def test_filters_on_agents(world):
    """Agents filter by state and free text."""
    client = client_as(world.operator)
    client.post(f"/api/v1/agents/{world.agent_a.pk}/deactivate/")
    inactive = client.get("/api/v1/agents/", {"is_active": "false"}).json()["results"]
    assert [a["id"] for a in inactive] == [str(world.agent_a.pk)]
    found = client.get(
        # The local part and "@": a bare prefix such as "agent123" also matches the
        # agent numbered 1231 when the factories' counter gets there.
        "/api/v1/agents/",
        {"search": world.agent_b.email.partition("@")[0] + "@", "ministry": "bravo"},
    ).json()["results"]
    assert [a["id"] for a in found] == [str(world.agent_b.pk)]


def test_deactivation_ends_the_agents_sessions_at_once(world):
    """A deactivated agent's open session stops working on the very next request."""
    agent_session = client_as(world.agent_a)
    assert agent_session.get("/api/v1/agents/").status_code == 200
    response = client_as(world.admin_a).post(f"/api/v1/agents/{world.agent_a.pk}/deactivate/")
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert agent_session.get("/api/v1/agents/").status_code in (401, 403)
    assert agent_session.get("/console/").status_code == 302


def test_admin_cannot_deactivate_themselves(world):
    """Locking oneself out is refused with a reason."""
    response = client_as(world.admin_a).post(f"/api/v1/agents/{world.admin_a.pk}/deactivate/")
    assert response.status_code == 400
    assert "your own account" in str(response.json())


def test_admin_updates_and_reactivates_an_agent(world):
    """PATCH changes directory attributes; reactivate restores access."""
    client = client_as(world.admin_a)
    response = client.patch(
        f"/api/v1/agents/{world.agent_a.pk}/", {"organizational_unit": "SGA"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["organizational_unit"] == "SGA"
    client.post(f"/api/v1/agents/{world.agent_a.pk}/deactivate/")
    response = client.post(f"/api/v1/agents/{world.agent_a.pk}/reactivate/")
    assert response.json()["is_active"] is True
    assert response.json()["deactivated_at"] is None


def test_admin_grants_roles_in_their_ministry_only(world):
    """An admin makes an agent of their ministry auditor; not an operator, not elsewhere."""
    client = client_as(world.admin_a)
    ok = client.post(
        "/api/v1/role-grants/",
        {"agent": str(world.agent_a.pk), "role": "auditor", "ministry": "alpha"},
    )
    assert ok.status_code == 201, ok.json()
    operator = client.post(
        "/api/v1/role-grants/", {"agent": str(world.agent_a.pk), "role": "operator"}
    )
    assert operator.status_code == 403
    foreign = client.post(
        "/api/v1/role-grants/",
        {"agent": str(world.agent_b.pk), "role": "auditor", "ministry": "alpha"},
    )
    assert foreign.status_code == 400
    again = client.post(
        "/api/v1/role-grants/",
        {"agent": str(world.agent_a.pk), "role": "auditor", "ministry": "alpha"},
    )
    assert again.status_code == 400
    assert RoleGrant.objects.filter(agent=world.agent_a).count() == 1


def test_api_token_is_shown_once_and_stored_hashed(world):
    """The clear token appears only in the creation response; the database holds a digest."""
    client = client_as(world.admin_a)
    response = client.post(
        "/api/v1/api-tokens/", {"name": "SIRH sync", "ministry": "alpha", "role": "ministry_admin"}
    )
    assert response.status_code == 201, response.json()
    clear = response.json()["token"]
    assert clear.startswith("vcp_")
    token = ApiToken.objects.get()
    assert clear not in (token.digest, token.prefix)
    listed = client.get(f"/api/v1/api-tokens/{token.pk}/").json()
    assert "token" not in listed
    assert clear not in str(AuditEvent.objects.values_list("data", flat=True))


def test_api_token_acts_within_its_ministry(world):
    """A token of ministry A lists A's agents only and records its use."""
    client = client_with_token(world.admin_a, world.a, Role.MINISTRY_ADMIN)
    emails = {a["email"] for a in client.get("/api/v1/agents/").json()["results"]}
    assert world.agent_a.email in emails
    assert world.agent_b.email not in emails
    assert ApiToken.objects.get().last_used_at is not None


def test_auditor_token_cannot_write(world):
    """A token with the auditor role reads but never writes."""
    client = client_with_token(world.admin_a, world.a, Role.AUDITOR)
    assert client.get("/api/v1/agents/").status_code == 200
    response = client.post(f"/api/v1/agents/{world.agent_a.pk}/deactivate/")
    assert response.status_code == 403


def test_tokens_cannot_mint_tokens(world):
    """A token never creates another token (no escalation by automation)."""
    client = client_with_token(world.admin_a, world.a, Role.MINISTRY_ADMIN)
    before = written()
    response = client.post(
        "/api/v1/api-tokens/", {"name": "x", "ministry": "alpha", "role": "ministry_admin"}
    )
    assert response.status_code == 403
    assert written() == before


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer", "Malformed Authorization header"),
        ("Bearer vcp_123", "Malformed API token"),
        ("Bearer a b", "Malformed Authorization header"),
        ("Bearer vcp_abcdef12_" + "x" * 43, "Unknown API token"),
    ],
)
def test_malformed_or_unknown_tokens_get_401(world, header, message):
    """Bad bearer tokens are refused with a precise reason."""
    from rest_framework.test import APIClient

    response = APIClient(HTTP_AUTHORIZATION=header, HTTP_ACCEPT_LANGUAGE="en").get(
        "/api/v1/agents/"
    )
    assert response.status_code == 401
    assert message in response.json()["detail"]


def test_expired_and_revoked_tokens_get_401(world):
    """Expiry and revocation take effect at once, each with its reason."""
    client = client_with_token(world.admin_a, world.a, Role.MINISTRY_ADMIN)
    token = ApiToken.objects.get()
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get("/api/v1/agents/")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(days=1))
    revoked = client_as(world.admin_a).delete(f"/api/v1/api-tokens/{token.pk}/")
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    response = client.get("/api/v1/agents/")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_token_expiry_is_bounded(world, settings):
    """A token cannot live longer than API_TOKEN_MAX_DAYS."""
    response = client_as(world.admin_a).post(
        "/api/v1/api-tokens/",
        {
            "name": "x",
            "ministry": "alpha",
            "role": "auditor",
            "expires_in_days": settings.API_TOKEN_MAX_DAYS + 1,
        },
    )
    assert response.status_code == 400
    assert "expires_in_days" in response.json()


def test_suspended_ministry_tokens_stop_working(world):
    """Suspending a ministry stops its automation too."""
    client = client_with_token(world.admin_a, world.a, Role.MINISTRY_ADMIN)
    Ministry.objects.filter(pk=world.a.pk).update(state="suspended")
    assert client.get("/api/v1/agents/").status_code == 401


@pytest.mark.parametrize("action", ["deactivate", "patch"])
def test_admin_cannot_touch_an_agent_with_wider_roles(world, action):
    """An agent of A who is also an operator is managed by operators only."""
    RoleGrant.objects.create(agent=world.agent_a, role=Role.OPERATOR)
    client = client_as(world.admin_a)
    path = f"/api/v1/agents/{world.agent_a.pk}/"
    response = (
        client.post(path + "deactivate/")
        if action == "deactivate"
        else client.patch(path, {"email": f"other@{world.a.code}.gouv.fr"}, format="json")
    )
    assert response.status_code == 403
    agent = Agent.objects.get(pk=world.agent_a.pk)
    assert agent.is_active and agent.email == world.agent_a.email
    assert client_as(world.operator).post(path + "deactivate/").status_code == 200


def test_deactivating_an_admin_revokes_their_tokens(world):
    """A leaver's API tokens stop working with them."""
    client = client_with_token(world.admin_a, world.a, Role.MINISTRY_ADMIN)
    assert client.get("/api/v1/agents/").status_code == 200
    response = client_as(world.operator).post(f"/api/v1/agents/{world.admin_a.pk}/deactivate/")
    assert response.status_code == 200
    assert client.get("/api/v1/agents/").status_code == 401
    assert AuditEvent.objects.filter(action="api_token.revoke").count() == 1


def test_suspension_takes_rights_away_from_open_sessions(world):
    """Once its ministry is suspended, an admin's open session can no longer write there."""
    client = client_as(world.admin_a)
    Ministry.objects.filter(pk=world.a.pk).update(state="suspended")
    response = client.post(f"/api/v1/agents/{world.agent_a.pk}/deactivate/")
    assert response.status_code in (403, 404)
    assert Agent.objects.get(pk=world.agent_a.pk).is_active


@pytest.mark.parametrize(
    ("start", "target", "ok"),
    [
        ("pilot", "rolling_out", True),
        ("rolling_out", "generalised", True),
        ("generalised", "suspended", True),
        ("suspended", "rolling_out", True),
        ("generalised", "pilot", False),
        ("pilot", "generalised", False),
    ],
)
def test_rollout_only_moves_forward(world, start, target, ok):
    """pilot → rolling out → generalised; any state can be suspended and resumed."""
    Ministry.objects.filter(pk=world.a.pk).update(state=start)
    response = client_as(world.operator).patch(
        "/api/v1/ministries/alpha/", {"state": target}, format="json"
    )
    assert (response.status_code == 200) is ok, response.json()
    assert Ministry.objects.get(pk=world.a.pk).state == (target if ok else start)
    if not ok:
        assert "only moves forward" in str(response.json()["state"])


ONBOARDING = {
    **NEW_MINISTRY,
    "admins": ["cheffe.projet@interieur.gouv.fr"],
    "licence_pool": {
        "starts_on": "2026-01-01",
        "ends_on": "2027-12-31",
        "seats": 1000,
        "foreign_price_eur": "10.00",
        "sovereign_cost_eur": "1.50",
    },
}


def test_operator_onboards_a_ministry_in_one_request(world):
    """Identity, identifiers, seats and first admins, all created together."""
    from accounts.models import PendingRoleGrant

    response = client_as(world.operator).post("/api/v1/onboardings/", ONBOARDING, format="json")
    assert response.status_code == 201, response.json()
    ministry = Ministry.objects.get(code="interieur")
    assert ministry.licence_pools.get().seats == 1000
    assert PendingRoleGrant.objects.get(email="cheffe.projet@interieur.gouv.fr").ministry == (
        ministry
    )
    assert {"ministry.create", "licence_pool.create", "role_grant.invite"} <= set(
        AuditEvent.objects.values_list("action", flat=True)
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"admins": ["boss@elsewhere.fr"]}, "admins"),
        ({"licence_pool": {**ONBOARDING["licence_pool"], "ends_on": "2025-01-01"}}, "licence_pool"),
        ({"siren": "123"}, "siren"),
    ],
)
def test_a_bad_onboarding_writes_nothing(world, change, field):
    """An admin outside the ministry's domains or a bad pool: 400, no ministry, no event."""
    before = written()
    response = client_as(world.operator).post(
        "/api/v1/onboardings/", {**ONBOARDING, **change}, format="json"
    )
    assert response.status_code == 400
    assert field in response.json()
    assert written() == before


@pytest.mark.parametrize("caller", ["admin_a", "national_auditor", "agent_a"])
def test_only_operators_onboard(world, caller):
    """Ministry admins, auditors and agents cannot onboard a ministry."""
    response = client_as(getattr(world, caller)).post(
        "/api/v1/onboardings/", ONBOARDING, format="json"
    )
    assert response.status_code == 403
    assert not Ministry.objects.filter(code="interieur").exists()
