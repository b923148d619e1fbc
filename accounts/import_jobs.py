"""Import jobs: a ministry's CSV queued for the worker (``accounts.tasks``).

The API and the console call ``agent_import_job_create``; the job's row keeps the
file and, once the worker is done, its counts and error report. This module is
apart from ``accounts.imports`` because the worker imports that one: queueing from
here keeps the dependencies one way (import_jobs -> tasks -> imports).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from accounts.access import require_admin
from accounts.models import AgentImportJob, Ministry
from accounts.tasks import agent_import_job_run
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
