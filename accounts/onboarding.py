"""Onboarding a ministry in one go, as the operators' wizard and the API submit it.

The ministry (identity, identifiers, rollout goal with milestones, residency tags),
its licence pool, and its first admins named by email, in one transaction.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.grants import role_grant_invite
from accounts.ministries import ministry_create
from accounts.models import Ministry, Role
from audit.actor import Actor

# Looked up on the module at each call, so a stand-in set on licensing.services (the
# tests' race and rollback probes) applies here too.
from licensing import services as licensing_services


@transaction.atomic
def ministry_onboard(
    *, actor: Actor, admins: list[str] = (), licence_pool: dict | None = None, **ministry
) -> Ministry:
    """Onboard a ministry in one go: identity, identifiers, rollout goal with milestones,
    residency tags, seats and first admins named by email (they get their role at first
    login). All of it, or nothing."""
    created = ministry_create(actor=actor, **ministry)
    if licence_pool is not None:
        try:
            licensing_services.licence_pool_create(actor=actor, ministry=created, **licence_pool)
        except ValidationError as exc:
            raise ValidationError({"licence_pool": exc.messages}) from exc
    for email in admins:
        try:
            role_grant_invite(actor=actor, email=email, role=Role.MINISTRY_ADMIN, ministry=created)
        except ValidationError as exc:
            raise ValidationError({"admins": [f"{email}: {m}" for m in exc.messages]}) from exc
    return created
