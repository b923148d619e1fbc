"""Beat tasks of usage: the incremental roll-up and the retention of personal data."""

import logging

from celery import shared_task

from audit.actor import Actor
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
