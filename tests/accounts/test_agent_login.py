"""Who gets in, decided from verified claims (the service behind the OIDC callback)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.grants import role_grant_invite
from accounts.login import LoginRefused, agent_login
from accounts.models import Agent, PendingRoleGrant, RoleGrant
from accounts.oidc.provider import acr_satisfies
from audit.actor import Actor
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def claims(world, **over):
    base = {
        "sub": "sub-1",
        "email": f"new@{world.a.code}.gouv.fr",
        "given_name": "Léa",
        "usual_name": "Roux",
        "siret": world.a.sirets.get().siret,
        "acr": "eidas1",
    }
    return {**base, **over}


@pytest.mark.parametrize("missing", ["sub", "email"])
def test_claims_without_sub_or_email_are_refused(world, missing):
    """A login needs a subject and an email."""
    with pytest.raises(LoginRefused) as exc:
        agent_login(claims=claims(world, **{missing: ""}))
    assert exc.value.reason == "claims_missing"


def test_an_email_bound_to_another_sub_is_refused(world):
    """An account already bound cannot be taken over by another identity with its email."""
    Agent.objects.filter(pk=world.agent_a.pk).update(sub="the-real-one")
    with pytest.raises(LoginRefused) as exc:
        agent_login(claims=claims(world, email=world.agent_a.email, sub="an-impostor"))
    assert exc.value.reason == "identity_conflict"
    assert Agent.objects.get(pk=world.agent_a.pk).sub == "the-real-one"


def test_imported_agent_of_another_ministry_is_not_bound(world):
    """Neither the SIRET nor the domain of the claims is the agent's ministry: refused."""
    world.a.domains.all().delete()  # alpha no longer owns the agent's email domain
    with pytest.raises(LoginRefused) as exc:
        agent_login(
            claims=claims(world, email=world.agent_a.email, siret=world.b.sirets.get().siret)
        )
    assert exc.value.reason == "ministry_mismatch"
    assert Agent.objects.get(pk=world.agent_a.pk).sub is None


def test_imported_agent_is_bound_by_siret_alone(world):
    """The SIRET is enough to recognise the agent's ministry."""
    world.a.domains.all().delete()
    agent = agent_login(claims=claims(world, email=world.agent_a.email))
    assert agent.pk == world.agent_a.pk and agent.sub == "sub-1"


def test_national_staff_are_bound_by_email(world):
    """An operator bootstrapped by email (no ministry) is bound at first login."""
    agent = agent_login(claims=claims(world, email=world.operator.email, siret="x"))
    assert agent.pk == world.operator.pk and agent.sub == "sub-1"


def test_a_promise_on_another_ministry_stays_pending(world):
    """A role promised on ministry B is not given to an agent of A."""
    PendingRoleGrant.objects.create(
        email=f"new@{world.a.code}.gouv.fr", role="auditor", ministry=world.b
    )
    world.a.jit_provisioning = True
    world.a.save()
    agent = agent_login(claims=claims(world))
    assert not RoleGrant.objects.filter(agent=agent).exists()
    assert PendingRoleGrant.objects.count() == 1


def test_inviting_a_known_agent_grants_at_once(world):
    """Naming an existing agent gives the role now, not at a login long past."""
    grant = role_grant_invite(
        actor=Actor(user=world.admin_a, label="admin"),
        email=world.agent_a.email.upper(),
        role="auditor",
        ministry=world.a,
    )
    assert isinstance(grant, RoleGrant) and grant.agent == world.agent_a
    assert not PendingRoleGrant.objects.exists()


def test_repeated_logins_within_the_hour_write_only_the_audit_event(world):
    """last_login is kept to the hour; every login is still audited."""
    Agent.objects.filter(pk=world.agent_a.pk).update(sub="sub-a")
    first = agent_login(claims=claims(world, sub="sub-a", email=world.agent_a.email))
    stamp = Agent.objects.get(pk=first.pk).last_login
    agent_login(claims=claims(world, sub="sub-a", email=world.agent_a.email))
    assert Agent.objects.get(pk=first.pk).last_login == stamp
    Agent.objects.filter(pk=first.pk).update(last_login=timezone.now() - timedelta(hours=2))
    agent_login(claims=claims(world, sub="sub-a", email=world.agent_a.email))
    assert Agent.objects.get(pk=first.pk).last_login > stamp
    assert AuditEvent.objects.filter(action="auth.login", object_id=str(first.pk)).count() == 3


@pytest.mark.parametrize(
    ("acr", "minimum", "ok"),
    [
        ("eidas1", "eidas1", True),
        ("eidas2", "eidas1", True),
        ("eidas1", "eidas2", False),
        ("eidas3-mfa", "eidas2", True),
        (None, "eidas1", False),
        ("loa1", "eidas1", False),
    ],
)
def test_acr_ranking(acr, minimum, ok):
    """eidas1 < eidas2 < eidas3 (-mfa variants rank with their level); unknown is too low."""
    assert acr_satisfies(acr, minimum) is ok
