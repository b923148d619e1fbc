"""Seats: what other apps ask licensing, and the writes on licence pools.

An active agent holds a seat. Every activation (API, CSV, SCIM, first login) goes
through ``seat_reserve`` inside its own transaction: the current pool's row is
locked while agents with a seat are counted, so two activations at once never
overbook a pool.
"""

from __future__ import annotations

from datetime import date

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import require_operator
from accounts.selectors import agents_with_seat
from audit.actor import Actor
from audit.services import audit_record
from controlplane.errors import NoSeat
from licensing.models import LicencePool


class NoFreeSeat(NoSeat):
    """Activating one more agent would exceed the ministry's licence pool (409
    ``no_free_seat`` in the error table)."""

    def __init__(self, ministry, seats: int | None):
        self.ministry = ministry
        self.seats = seats
        if seats is None:
            message = _("Ministry “%(code)s” holds no licence pool covering today.") % {
                "code": ministry.code
            }
        else:
            message = _("All %(seats)d seats of ministry “%(code)s” are in use.") % {
                "seats": seats,
                "code": ministry.code,
            }
        super().__init__(message)


def seat_reserve(*, ministry, count: int = 1) -> None:
    """Make sure ``count`` more agents of ``ministry`` may be active; raise NoFreeSeat.

    Must run inside the transaction that activates them: the pool row stays
    locked until it commits, so concurrent activations are counted one after
    the other.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("seat_reserve must run inside the activating transaction")
    today = timezone.localdate()
    pool = (
        LicencePool.objects.select_for_update()
        .filter(ministry=ministry, starts_on__lte=today, ends_on__gte=today)
        .order_by("-starts_on")
        .first()
    )
    if pool is None:
        raise NoFreeSeat(ministry, None)
    if agents_with_seat(ministry_id=ministry.pk) + count > pool.seats:
        raise NoFreeSeat(ministry, pool.seats)


@transaction.atomic
def licence_pool_create(
    *,
    actor: Actor,
    ministry,
    starts_on: date,
    ends_on: date,
    seats: int,
    foreign_price_eur,
    sovereign_cost_eur,
) -> LicencePool:
    """Give a ministry seats for a period (operators only); periods may not overlap."""
    require_operator(actor)
    if ends_on < starts_on:
        raise ValidationError({"ends_on": _("The period ends before it starts.")})
    # Lock the ministry's pools so that two overlapping creations cannot both pass.
    existing = LicencePool.objects.select_for_update().filter(ministry=ministry)
    overlap = existing.filter(starts_on__lte=ends_on, ends_on__gte=starts_on).first()
    if overlap is not None:
        raise ValidationError(
            {
                "starts_on": _("This period overlaps the pool from %(start)s to %(end)s.")
                % {"start": overlap.starts_on, "end": overlap.ends_on}
            }
        )
    pool = LicencePool(
        ministry=ministry,
        starts_on=starts_on,
        ends_on=ends_on,
        seats=seats,
        foreign_price_eur=foreign_price_eur,
        sovereign_cost_eur=sovereign_cost_eur,
    )
    pool.full_clean()
    pool.save(force_insert=True)
    audit_record(
        actor=actor,
        action="licence_pool.create",
        target=pool,
        ministry_id=ministry.pk,
        data={
            "starts_on": starts_on,
            "ends_on": ends_on,
            "seats": seats,
            "foreign_price_eur": foreign_price_eur,
            "sovereign_cost_eur": sovereign_cost_eur,
        },
    )
    return pool
