"""Background work of accounts: CSV imports too large to wait for."""

from celery import shared_task
from django.utils import timezone

from accounts.agent_import import ImportFileError, agent_import_apply, agent_import_plan
from accounts.models import AgentImportJob
from audit.actor import Actor
from licensing.services import NoFreeSeat


@shared_task(name="accounts.tasks.agent_import_job_run", soft_time_limit=1800, time_limit=1900)
def agent_import_job_run(job_id: str) -> str:
    """Run one import job; a job already claimed or finished is left alone."""
    claimed = AgentImportJob.objects.filter(pk=job_id, state=AgentImportJob.State.PENDING).update(
        state=AgentImportJob.State.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        return "skipped"
    job = AgentImportJob.objects.select_related("ministry", "created_by").get(pk=job_id)
    if job.created_by is not None:
        actor = Actor(user=job.created_by, label=job.created_by.email)
    else:  # created with an API token, which the API checked when the job was created
        actor = Actor.system(f"agent import {job.pk}")
    try:
        plan = agent_import_plan(
            ministry=job.ministry,
            raw=bytes(job.content),
            delimiter=job.delimiter or None,
            deactivate_missing=job.deactivate_missing,
        )
        job.rows_total = len(plan.rows)
        if job.apply:
            agent_import_apply(actor=actor, plan=plan)
        job.counts = plan.counts
        job.errors_csv = plan.errors_csv() if plan.counts["error"] else ""
        job.state = AgentImportJob.State.DONE
    except (ImportFileError, NoFreeSeat) as exc:
        job.failure = str(exc)
        job.state = AgentImportJob.State.FAILED
    job.finished_at = timezone.now()
    job.save(
        update_fields=[
            "rows_total",
            "counts",
            "errors_csv",
            "failure",
            "state",
            "finished_at",
            "updated_at",
        ]
    )
    return job.state
