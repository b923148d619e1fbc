"""Background verification of the audit chain."""

from celery import shared_task

from audit.services import audit_chain_verify


@shared_task(name="audit.tasks.audit_chain_verify_task", soft_time_limit=600, time_limit=660)
def audit_chain_verify_task() -> dict:
    """Verify the whole chain; returns what ``manage.py audit_verify`` prints."""
    result = audit_chain_verify()
    return {
        "intact": result.intact,
        "checked": result.checked,
        "broken_sequence": result.broken_sequence,
        "reason": result.reason,
    }
