"""Background work of accounts: CSV imports too large to wait for."""

import time
from uuid import UUID

from celery import shared_task
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.import_csv import ImportFileError, RowOutcome
from accounts.imports import agent_import_apply, agent_import_plan
from accounts.metrics import IMPORT_JOBS, IMPORT_ROWS
from accounts.models import AgentImportJob
from audit.actor import Actor
from licensing.services import NoFreeSeat

# A running job writes its progress at most every PROGRESS_SECONDS, or after
# PROGRESS_ROWS more rows, whichever comes first; plus once at the end.
PROGRESS_SECONDS = 0.5
PROGRESS_ROWS = 10_000
WRITES = {"create", "update", "deactivate"}


class JobProgress:
    """Rows known and rows finished of a running import, written to its job row.

    A row is finished once planned, except, when the job applies, a row that writes
    (create, update, deactivate): that one is finished once written. The row is
    updated through a connection of its own, so that pages and API see the progress
    while the import's all-or-nothing transaction is still open.
    """

    def __init__(self, job_id: str, *, apply: bool):
        self.job_id = UUID(str(job_id))
        self.apply = apply
        self.total = 0
        self.done = 0
        self._written_at = time.monotonic()
        self._written_done = 0
        self._connection = None

    def planned(self, outcomes: list[RowOutcome], total: int) -> None:
        """Outcomes decided by the plan, and the rows known so far."""
        self.total = total
        self.done += sum(1 for o in outcomes if not (self.apply and o.action in WRITES))
        self._maybe_write()

    def applied(self, rows: int) -> None:
        """Rows just written by the import."""
        self.done += rows
        self._maybe_write()

    def _maybe_write(self) -> None:
        if (
            time.monotonic() - self._written_at >= PROGRESS_SECONDS
            or self.done - self._written_done >= PROGRESS_ROWS
        ):
            self.write()

    def write(self) -> None:
        """Store rows_done and rows_total now."""
        done, total = min(self.done, self.total), self.total
        if self._connection is None:
            self._connection = connections.create_connection(DEFAULT_DB_ALIAS)
        with self._connection.cursor() as cursor:  # autocommit: visible at once
            cursor.execute(
                "UPDATE accounts_agentimportjob SET rows_done = %s, rows_total = %s WHERE id = %s",
                [done, total, self.job_id],
            )
        self._written_at, self._written_done = time.monotonic(), self.done

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


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
    progress = JobProgress(job.pk, apply=job.apply)
    try:
        plan = agent_import_plan(
            ministry=job.ministry,
            raw=bytes(job.content),
            delimiter=job.delimiter or None,
            deactivate_missing=job.deactivate_missing,
            progress=progress.planned,
        )
        job.rows_total = len(plan.rows)
        if job.apply:
            agent_import_apply(actor=actor, plan=plan, progress=progress.applied)
        job.rows_done = job.rows_total
        job.counts = plan.counts
        job.errors_csv = plan.errors_csv() if plan.counts["error"] else ""
        job.state = AgentImportJob.State.DONE
    except (ImportFileError, NoFreeSeat) as exc:
        job.failure = str(exc)
        job.state = AgentImportJob.State.FAILED
    except IntegrityError:
        # Another import or a login created one of these agents meanwhile: nothing was
        # written (the import is all or nothing) and the file can simply be sent again.
        job.failure = _(
            "Some of these agents were created by someone else during the import; nothing "
            "was imported. Send the file again."
        )
        job.state = AgentImportJob.State.FAILED
    finally:
        progress.close()
    job.finished_at = timezone.now()
    if job.state == AgentImportJob.State.FAILED:
        job.rows_done = min(progress.done, job.rows_total or progress.total)
        job.rows_total = job.rows_total or progress.total
    job.save(
        update_fields=[
            "rows_total",
            "rows_done",
            "counts",
            "errors_csv",
            "failure",
            "state",
            "finished_at",
            "updated_at",
        ]
    )
    mode = "apply" if job.apply else "preview"
    IMPORT_JOBS.labels(state=job.state, mode=mode).inc()
    for action, rows in (job.counts or {}).items():
        if rows:
            IMPORT_ROWS.labels(action=action, mode=mode).inc(rows)
    return job.state
