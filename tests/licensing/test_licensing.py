"""Seats: an active agent holds one; activating beyond the pool is refused, even at once."""

import threading
from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction

from accounts.agents import agent_create
from accounts.models import Agent
from audit.actor import Actor
from audit.models import AuditEvent
from licensing.models import LicencePool
from licensing.services import NoFreeSeat, licence_pool_create
from tests.factories import MinistryFactory
from tests.support.clients import client_as


def _fill(ministry, seats):
    """Set the pool to ``seats`` seats."""
    ministry.licence_pools.update(seats=seats)


@pytest.mark.django_db
def test_api_refuses_an_agent_beyond_the_pool_with_409(world):
    """Creating an agent when every seat is taken is a 409 naming the reason; nothing written."""
    active = Agent.objects.filter(ministry=world.a, is_active=True).count()
    _fill(world.a, active)
    before = (Agent.objects.count(), AuditEvent.objects.count())
    response = client_as(world.admin_a).post(
        "/api/v1/agents/", {"ministry": "alpha", "email": "one.more@alpha.gouv.fr"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "no_free_seat"
    assert f"All {active} seats" in response.json()["detail"]
    assert (Agent.objects.count(), AuditEvent.objects.count()) == before


@pytest.mark.django_db
def test_reactivation_needs_a_free_seat(world):
    """A leaver comes back only if a seat is free; deactivating frees one."""
    client = client_as(world.admin_a)
    assert client.post(f"/api/v1/agents/{world.agent_a.pk}/deactivate/").status_code == 200
    _fill(world.a, Agent.objects.filter(ministry=world.a, is_active=True).count())
    response = client.post(f"/api/v1/agents/{world.agent_a.pk}/reactivate/")
    assert response.status_code == 409
    assert not Agent.objects.get(pk=world.agent_a.pk).is_active
    world.a.licence_pools.update(seats=1000)
    assert client.post(f"/api/v1/agents/{world.agent_a.pk}/reactivate/").status_code == 200


@pytest.mark.django_db
def test_a_ministry_without_a_current_pool_has_no_seat(world):
    """No pool covering today means no seat, said as such."""
    world.a.licence_pools.all().delete()
    response = client_as(world.admin_a).post(
        "/api/v1/agents/", {"ministry": "alpha", "email": "x@alpha.gouv.fr"}, format="json"
    )
    assert response.status_code == 409
    assert "no licence pool covering today" in response.json()["detail"]


@pytest.mark.django_db
def test_pools_are_created_by_operators_without_overlap(world):
    """Operators create pools; a period overlapping another is refused; it is audited."""
    ministry = MinistryFactory()
    ministry.licence_pools.all().delete()
    kwargs = {
        "ministry": ministry,
        "starts_on": date(2027, 1, 1),
        "ends_on": date(2027, 12, 31),
        "seats": 10,
        "foreign_price_eur": Decimal("10"),
        "sovereign_cost_eur": Decimal("2"),
    }
    with pytest.raises(PermissionDenied):
        licence_pool_create(actor=Actor(user=world.admin_a, label="a"), **kwargs)
    operator = Actor(user=world.operator, label="op")
    pool = licence_pool_create(actor=operator, **kwargs)
    assert AuditEvent.objects.filter(action="licence_pool.create", object_id=str(pool.pk))
    with pytest.raises(ValidationError) as exc:
        licence_pool_create(
            actor=operator,
            **{**kwargs, "starts_on": date(2027, 6, 1), "ends_on": date(2028, 5, 31)},
        )
    assert "overlaps" in str(exc.value)
    with pytest.raises(ValidationError):
        licence_pool_create(
            actor=operator, **{**kwargs, "starts_on": date(2029, 1, 1), "ends_on": date(2028, 1, 1)}
        )
    assert LicencePool.objects.filter(ministry=ministry).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_activations_never_overbook(world):
    """Eight creations at once against two free seats: exactly two agents are created."""
    active = Agent.objects.filter(ministry=world.a, is_active=True).count()
    _fill(world.a, active + 2)
    actor = Actor(user=world.admin_a, label="admin")
    outcomes = []
    barrier = threading.Barrier(8)

    def create(i):
        try:
            barrier.wait()
            with transaction.atomic():
                agent_create(actor=actor, ministry=world.a, email=f"rush{i}@alpha.gouv.fr")
            outcomes.append("created")
        except NoFreeSeat:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["created"] * 2 + ["refused"] * 6
    assert Agent.objects.filter(ministry=world.a, is_active=True).count() == active + 2


@pytest.mark.django_db
def test_savings_per_ministry_and_national(world):
    """Agents × foreign price − seats × sovereign cost; national sums every ministry."""
    world.a.licence_pools.update(
        seats=10, foreign_price_eur=Decimal("10"), sovereign_cost_eur=Decimal("1.5")
    )
    world.b.licence_pools.update(
        seats=20, foreign_price_eur=Decimal("12"), sovereign_cost_eur=Decimal("2")
    )
    active_a = Agent.objects.filter(ministry=world.a, is_active=True).count()
    active_b = Agent.objects.filter(ministry=world.b, is_active=True).count()
    one = client_as(world.admin_a).get("/api/v1/licence-pools/savings/?ministry=alpha").json()
    assert one == {
        "seats": 10,
        "agents_with_seat": active_a,
        "foreign_cost_eur": f"{active_a * 10:.2f}",
        "sovereign_cost_eur": "15.00",
        "yearly_savings_eur": f"{active_a * 10 - 15:.2f}",
    }
    national = client_as(world.national_auditor).get("/api/v1/licence-pools/savings/").json()
    assert national["seats"] == 30
    assert national["yearly_savings_eur"] == f"{active_a * 10 + active_b * 12 - 15 - 40:.2f}"
    other = client_as(world.admin_b).get("/api/v1/licence-pools/savings/?ministry=alpha")
    assert other.status_code == 400, "B's admin cannot read A's figures"
