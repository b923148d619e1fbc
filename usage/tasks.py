"""Background work of usage: the monthly reports, made by beat on the first of the month."""

import logging
from datetime import date

from celery import shared_task

from audit.actor import Actor
from usage.reports import monthly_reports_generate, previous_month

logger = logging.getLogger(__name__)


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
