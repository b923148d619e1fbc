"""Writes on ministries, agents, role grants and API tokens.

Each service checks the actor's right, validates, writes atomically and records
an audit event in the same transaction: a refused or failed write leaves nothing.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.access import require_admin
from accounts.grants import role_grant_invite
from accounts.ministries import ministry_create
from accounts.models import (
    AgentImportJob,
    Ministry,
    Role,
)
from audit.actor import Actor
from audit.services import audit_record


@transaction.atomic
def agent_import_job_create(
    *,
    actor: Actor,
    ministry: Ministry,
    content: bytes,
    filename: str = "",
    delimiter: str = "",
    deactivate_missing: bool = False,
    apply: bool = False,
) -> AgentImportJob:
    """Queue a CSV import (a preview unless ``apply``); the task starts after commit."""
    from accounts.tasks import agent_import_job_run

    require_admin(actor, ministry.pk)
    if len(content) > settings.AGENT_IMPORT_MAX_BYTES:
        raise ValidationError(
            {
                "file": _("The file is %(size)d MB; the limit is %(max)d MB.")
                % {
                    "size": len(content) // 1_000_000,
                    "max": settings.AGENT_IMPORT_MAX_BYTES // 1_000_000,
                }
            }
        )
    job = AgentImportJob.objects.create(
        ministry=ministry,
        created_by=actor.agent,
        token_id=actor.token.pk if actor.token is not None else None,
        content=content,
        filename=filename[:255],
        delimiter=delimiter,
        deactivate_missing=deactivate_missing,
        apply=apply,
    )
    audit_record(
        actor=actor,
        action="agent_import.create",
        target=job,
        ministry_id=ministry.pk,
        data={
            "filename": filename[:255],
            "bytes": len(content),
            "apply": apply,
            "deactivate_missing": deactivate_missing,
        },
    )
    transaction.on_commit(lambda: agent_import_job_run.delay(str(job.pk)))
    return job


@transaction.atomic
def ministry_onboard(
    *, actor: Actor, admins: list[str] = (), licence_pool: dict | None = None, **ministry
) -> Ministry:
    """Onboard a ministry in one go: identity, identifiers, rollout goal with milestones,
    residency tags, seats and first admins named by email (they get their role at first
    login). All of it, or nothing."""
    from licensing.services import licence_pool_create

    created = ministry_create(actor=actor, **ministry)
    if licence_pool is not None:
        try:
            licence_pool_create(actor=actor, ministry=created, **licence_pool)
        except ValidationError as exc:
            raise ValidationError({"licence_pool": exc.messages}) from exc
    for email in admins:
        try:
            role_grant_invite(actor=actor, email=email, role=Role.MINISTRY_ADMIN, ministry=created)
        except ValidationError as exc:
            raise ValidationError({"admins": [f"{email}: {m}" for m in exc.messages]}) from exc
    return created
