"""Erasure of agents their directory deleted, once the ministry's retention has run out."""

import logging

from celery import shared_task

from audit.actor import Actor
from scim.services import agents_erase_due

logger = logging.getLogger(__name__)


@shared_task(name="scim.tasks.agents_erase_due_task", soft_time_limit=600, time_limit=660)
def agents_erase_due_task() -> int:
    """Erase what is due, in batches of 1,000, until nothing is left."""
    total = 0
    while erased := agents_erase_due(actor=Actor.system("erasure")):
        total += erased
    if total:
        logger.info("Erased the personal data of %s deleted agents", total)
    return total
