"""Which ministry a login belongs to when its SIRET and email domain disagree, or one
of them names no ministry (the rule in ``accounts.login``'s docstring and the README)."""

import logging

import pytest

from accounts.login import LoginRefused, agent_login, login_refusal_record
from accounts.models import Agent
from audit.models import AuditEvent
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db
UNKNOWN_SIRET = "21000000600010"


@pytest.fixture
def jit(world):
    """Both ministries create agents at their first login."""
    for ministry in (world.a, world.b):
        ministry.jit_provisioning = True
        ministry.save()
    return world


def siret(ministry):
    return ministry.sirets.get().siret


def claims(sub="sub-new", **over):
    return {"sub": sub, "given_name": "Léa", "usual_name": "Roux", "acr": "eidas1", **over}


def test_unknown_siret_and_a_known_domain_follow_the_domain(jit):
    """SIRET of no ministry, address of Alpha: created in Alpha."""
    agent = agent_login(claims=claims(email="lea@alpha.gouv.fr", siret=UNKNOWN_SIRET))
    assert agent.ministry == jit.a


def test_no_siret_and_a_known_domain_follow_the_domain(jit):
    """No SIRET at all: the address decides."""
    agent = agent_login(claims=claims(email="lea@alpha.gouv.fr"))
    assert agent.ministry == jit.a


@pytest.mark.parametrize(
    ("email", "siret_of", "reason"),
    [
        ("lea@alpha.gouv.fr", "b", "ministry_conflict"),
        ("lea@agence.example.fr", "b", "email_domain_unknown"),
        ("lea@agence.example.fr", None, "ministry_not_onboarded"),
    ],
    ids=["two-ministries", "domain-unknown", "neither-known"],
)
def test_first_logins_refused_by_the_ministry_rule(jit, email, siret_of, reason):
    """A first login is refused, and nothing written, when its claims name two
    ministries, when its address is in no ministry's domains, or when nothing is known."""
    before = Agent.objects.count()
    value = siret(getattr(jit, siret_of)) if siret_of else UNKNOWN_SIRET
    with pytest.raises(LoginRefused) as refused:
        agent_login(claims=claims(email=email, siret=value))
    assert refused.value.reason == reason
    assert Agent.objects.count() == before
    assert not AuditEvent.objects.exists()
    if reason == "ministry_conflict":
        assert refused.value.claimed.audit_data() == {
            "siret_ministry": jit.b.code,
            "domain_ministry": jit.a.code,
        }


def test_imported_agent_whose_siret_names_another_ministry_is_not_bound(world):
    """Imported in Alpha, Alpha's address, Bravo's SIRET: refused, left unbound."""
    with pytest.raises(LoginRefused) as refused:
        agent_login(claims=claims(email=world.agent_a.email, siret=siret(world.b)))
    assert refused.value.reason == "ministry_conflict"
    assert Agent.objects.get(pk=world.agent_a.pk).sub is None


def test_a_conflict_refusal_is_recorded_for_both_ministries(world):
    """Each ministry named finds the refusal in its own trail, with both named."""
    with pytest.raises(LoginRefused) as refused:
        agent_login(claims=claims(email="lea@alpha.gouv.fr", siret=siret(world.b)))
    exc = refused.value
    login_refusal_record(
        reason=exc.reason, claims=exc.claims, ip="192.0.2.1", detail=exc.detail, claimed=exc.claimed
    )
    events = AuditEvent.objects.filter(action="auth.login_refused")
    assert sorted(events.values_list("ministry_id", flat=True)) == sorted([world.a.pk, world.b.pk])
    assert {e.data["siret_ministry"] for e in events} == {world.b.code}


def test_bound_agent_with_conflicting_claims_keeps_their_names(world, caplog):
    """A bound agent of Alpha whose SIRET now names Bravo gets in to Alpha; names and
    unit stay, the conflict is audited in both ministries and logged."""
    caplog.set_level(logging.WARNING)
    agent = AgentFactory(
        ministry=world.a,
        email="old@alpha.gouv.fr",
        sub="sub-a",
        given_name="Old",
        usual_name="Name",
        organizational_unit="Alpha unit",
    )
    logged_in = agent_login(
        claims=claims(
            sub="sub-a",
            email="old@alpha.gouv.fr",
            siret=siret(world.b),
            organizational_unit="Bravo unit",
        )
    )
    assert logged_in.pk == agent.pk and logged_in.ministry == world.a
    agent.refresh_from_db()
    assert (agent.given_name, agent.usual_name, agent.organizational_unit) == (
        "Old",
        "Name",
        "Alpha unit",
    )
    events = AuditEvent.objects.filter(action="auth.ministry_conflict")
    assert sorted(events.values_list("ministry_id", flat=True)) == sorted([world.a.pk, world.b.pk])
    assert any("claims naming another ministry" in r.getMessage() for r in caplog.records)


def test_bound_agent_whose_claims_agree_is_updated_as_before(world):
    """No conflict: names follow the claims and no conflict is recorded."""
    agent = AgentFactory(ministry=world.a, email="old@alpha.gouv.fr", sub="sub-a", given_name="Old")
    agent_login(claims=claims(sub="sub-a", email="old@alpha.gouv.fr", siret=siret(world.a)))
    agent.refresh_from_db()
    assert agent.given_name == "Léa"
    assert not AuditEvent.objects.filter(action="auth.ministry_conflict").exists()


def test_national_staff_have_no_ministry_to_conflict_with(world):
    """An operator (no ministry) whose claims name a ministry records no conflict."""
    Agent.objects.filter(pk=world.operator.pk).update(sub="sub-op")
    agent_login(claims=claims(sub="sub-op", email=world.operator.email, siret=siret(world.b)))
    assert not AuditEvent.objects.filter(action="auth.ministry_conflict").exists()
