"""Beat tasks of usage: the incremental roll-up, the retention of personal data and
the monthly reports (made on the first of the month)."""

import logging
from datetime import date

from celery import shared_task

from audit.actor import Actor
from usage.reports import monthly_reports_generate, previous_month
from usage.retention import usage_retention_apply
from usage.rollup import rollup_incremental

logger = logging.getLogger(__name__)


@shared_task(name="usage.tasks.usage_rollup", soft_time_limit=540, time_limit=600)
def usage_rollup() -> int:
    """Roll up the days touched since the last run; returns the rows written. Safe to
    run twice: each day is recomputed completely, under the roll-up's lock."""
    return rollup_incremental()


@shared_task(name="usage.tasks.usage_retention", soft_time_limit=3000, time_limit=3300)
def usage_retention() -> dict:
    """Pseudonymise, then delete, participant sessions past their retention."""
    results = usage_retention_apply(actor=Actor.system("usage-retention"))
    totals = {
        "pseudonymised": sum(r.pseudonymised for r in results),
        "deleted": sum(r.deleted for r in results),
        "meetings_deleted": sum(r.meetings_deleted for r in results),
    }
    logger.info("Usage retention applied: %s", totals)
    return totals


@shared_task(name="usage.tasks.monthly_reports", soft_time_limit=900, time_limit=960)
def monthly_reports(month: str | None = None, force: bool = False) -> int:
    """Make the national and every ministry's report for ``month`` (``YYYY-MM``; by
    default the month before today). Reports already made are kept: a retry or a
    second beat only fills in what is missing."""
    first_day = date.fromisoformat(f"{month}-01") if month else previous_month()
    made = monthly_reports_generate(
        actor=Actor.system("monthly reports"), month=first_day, force=force
    )
    logger.info("Monthly reports for %s: %s made", f"{first_day:%Y-%m}", len(made))
    return len(made)
