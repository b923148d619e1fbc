"""agent_create lets the database's unique constraints decide (no check before the
insert, no savepoint), and still refuses a taken email or directory identifier
precisely, with nothing written."""

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test.utils import CaptureQueriesContext

from accounts.agents import agent_create
from accounts.models import Agent
from audit.actor import Actor
from audit.models import AuditEvent
from licensing.models import LicencePool
from licensing.services import NoFreeSeat
from tests.factories import AgentFactory

SYSTEM = Actor.system("tests")


def _refusal(world, **kwargs) -> ValidationError:
    with pytest.raises(ValidationError) as caught, transaction.atomic():
        agent_create(actor=SYSTEM, ministry=world.a, **kwargs)
    return caught.value


def test_a_taken_email_is_refused_as_unique_whatever_its_case(world):
    """An address held by an agent, sent in capitals, is refused on ``email`` with
    code ``unique`` (which SCIM answers 409); no agent and no audit event appear."""
    AgentFactory(ministry=world.a, email="jeanne.martin@alpha.gouv.fr")
    agents, events = Agent.objects.count(), AuditEvent.objects.count()
    error = _refusal(world, email="Jeanne.Martin@ALPHA.gouv.fr")
    assert [e.code for e in error.error_dict["email"]] == ["unique"]
    assert (Agent.objects.count(), AuditEvent.objects.count()) == (agents, events)


def test_a_taken_directory_identifier_is_refused_as_unique(world):
    """Another agent of the ministry with this externalId: refused on ``external_id``."""
    AgentFactory(ministry=world.a, external_id="E-1")
    error = _refusal(world, email="new@alpha.gouv.fr", external_id="E-1")
    assert [e.code for e in error.error_dict["external_id"]] == ["unique"]
    assert not Agent.objects.filter(email="new@alpha.gouv.fr").exists()


def test_another_ministry_may_hold_the_same_directory_identifier(world):
    """externalId is unique within a ministry only: B's E-1 does not block A's."""
    AgentFactory(ministry=world.b, external_id="E-1")
    agent = agent_create(
        actor=SYSTEM, ministry=world.a, email="new@alpha.gouv.fr", external_id="E-1"
    )
    assert Agent.objects.get(pk=agent.pk).external_id == "E-1"


def test_the_transaction_stays_usable_after_a_refusal(world):
    """A refused insert leaves the caller's transaction usable (the statement did not
    fail), so a caller may go on: here, create another agent in the same block."""
    AgentFactory(ministry=world.a, email="taken@alpha.gouv.fr")
    with transaction.atomic():
        with pytest.raises(ValidationError):
            agent_create(actor=SYSTEM, ministry=world.a, email="taken@alpha.gouv.fr")
        agent = agent_create(actor=SYSTEM, ministry=world.a, email="free@alpha.gouv.fr")
    assert Agent.objects.filter(pk=agent.pk).exists()


def test_a_full_pool_refuses_and_nothing_is_written(world):
    """The insert comes before the pool's lock; a full pool still refuses the agent
    and the transaction takes the row back."""
    pool = LicencePool.objects.get(ministry=world.a)
    pool.seats = Agent.objects.filter(ministry=world.a, is_active=True).count()
    pool.save()
    with pytest.raises(NoFreeSeat), transaction.atomic():
        agent_create(actor=SYSTEM, ministry=world.a, email="one.more@alpha.gouv.fr")
    assert not Agent.objects.filter(email="one.more@alpha.gouv.fr").exists()
    inactive = agent_create(
        actor=SYSTEM, ministry=world.a, email="leaver@alpha.gouv.fr", is_active=False
    )
    assert not Agent.objects.get(pk=inactive.pk).is_active


def test_a_create_runs_no_check_before_the_insert(world):
    """The statements of one creation, in order: the domain, the insert (which the
    constraints decide), the pool locked then its seats counted, the audit chain's
    head then the event. No duplicate check, no savepoint."""
    agent_create(actor=SYSTEM, ministry=world.a, email="first@alpha.gouv.fr")  # chain head
    with CaptureQueriesContext(transaction.get_connection()) as captured:
        agent_create(actor=SYSTEM, ministry=world.a, email="counted@alpha.gouv.fr")
    statements = [q["sql"].split()[0].upper() for q in captured.captured_queries]
    assert statements == [
        "SAVEPOINT",  # agent_create's, inside the test's transaction
        "SELECT",  # the email's domain is one of the ministry's
        "INSERT",  # ... ON CONFLICT DO NOTHING RETURNING id
        "SELECT",  # the current licence pool, locked
        "SELECT",  # its agents with a seat
        "UPDATE",  # the audit chain's head
        "WITH",  # the audit event, and the head's hash
        "RELEASE",
    ]
