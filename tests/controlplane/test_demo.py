"""The demo seed: believable, idempotent, audited."""

from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import Agent, Ministry, RoleGrant
from audit.models import AuditEvent
from audit.services import audit_chain_verify

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_audited():
    """Seeding twice gives the same ministries and accounts, and an intact audit chain."""
    call_command("seed_demo", stdout=StringIO())
    counts = (
        Ministry.objects.count(),
        Agent.objects.count(),
        RoleGrant.objects.count(),
        AuditEvent.objects.count(),
    )
    call_command("seed_demo", stdout=StringIO())
    assert counts == (
        Ministry.objects.count(),
        Agent.objects.count(),
        RoleGrant.objects.count(),
        AuditEvent.objects.count(),
    )
    assert set(Ministry.objects.values_list("code", "state")) == {
        ("armees", "rolling_out"),
        ("dgfip", "rolling_out"),
        ("assurance-maladie", "rolling_out"),
        ("culture", "pilot"),
    }
    assert RoleGrant.objects.filter(role="operator").count() == 1
    assert RoleGrant.objects.filter(role="auditor", ministry=None).count() == 1
    assert audit_chain_verify().intact


def test_operator_bootstrap_from_the_shell():
    """``operator_bootstrap`` names an operator once, with an audit event."""
    call_command("operator_bootstrap", "Chef@Numerique.gouv.fr", stdout=StringIO())
    call_command("operator_bootstrap", "chef@numerique.gouv.fr", stdout=StringIO())
    grant = RoleGrant.objects.get(role="operator")
    assert grant.agent.email == "chef@numerique.gouv.fr"
    event = AuditEvent.objects.get(action="role_grant.create")
    assert event.actor_label == "manage.py operator_bootstrap"
