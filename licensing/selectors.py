"""Reads of licence pools and seat usage, scoped to the caller."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import QuerySet
from django.utils import timezone

from accounts.access import access_for
from accounts.selectors import agents_with_seat_count
from licensing.models import LicencePool


def licence_pool_list(*, user) -> QuerySet[LicencePool]:
    """Pools of the ministries the caller reads (all of them for national roles)."""
    readable = access_for(user).readable_ministries
    pools = LicencePool.objects.select_related("ministry")
    return pools if readable is None else pools.filter(ministry_id__in=readable)


@dataclass(frozen=True)
class Savings:
    """Yearly figures of one ministry's current pool, or of all of them."""

    seats: int
    agents_with_seat: int
    foreign_cost_eur: Decimal
    sovereign_cost_eur: Decimal

    @property
    def yearly_savings_eur(self) -> Decimal:
        """Agents × foreign price − seats × sovereign cost, per year."""
        return self.foreign_cost_eur - self.sovereign_cost_eur


def savings_current(*, user, ministry_id=None) -> Savings:
    """Savings of today's pools, for one ministry or every ministry the caller reads."""
    today = timezone.localdate()
    pools = licence_pool_list(user=user).filter(starts_on__lte=today, ends_on__gte=today)
    if ministry_id is not None:
        pools = pools.filter(ministry_id=ministry_id)
    pools = pools.annotate(active=agents_with_seat_count("ministry__agents"))
    seats = active = 0
    foreign = sovereign = Decimal("0")
    for pool in pools:
        seats += pool.seats
        active += pool.active
        foreign += pool.active * pool.foreign_price_eur
        sovereign += pool.seats * pool.sovereign_cost_eur
    return Savings(
        seats=seats, agents_with_seat=active, foreign_cost_eur=foreign, sovereign_cost_eur=sovereign
    )
