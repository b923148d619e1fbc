"""Background verification of the audit chain."""

import logging

from celery import shared_task

from audit.services import audit_chain_verify

logger = logging.getLogger(__name__)


@shared_task(name="audit.tasks.audit_chain_verify_task", soft_time_limit=600, time_limit=660)
def audit_chain_verify_task() -> dict:
    """Verify the whole chain; returns what ``manage.py audit_verify`` prints."""
    result = audit_chain_verify()
    if not result.intact:
        logger.error("Audit chain broken at event #%s: %s", result.broken_sequence, result.reason)
    else:
        logger.info("Audit chain intact, head #%s %s", result.checked, result.head_hash)
    return {
        "intact": result.intact,
        "checked": result.checked,
        "broken_sequence": result.broken_sequence,
        "reason": result.reason,
    }
