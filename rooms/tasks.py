"""Beat task of rooms: forget webhook receipts once no replay of theirs can come."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from rooms.models import WebhookReceipt

logger = logging.getLogger(__name__)

PURGE_BATCH = 5000


@shared_task(name="rooms.tasks.webhook_receipts_purge", soft_time_limit=540, time_limit=600)
def webhook_receipts_purge() -> int:
    """Delete the receipts older than ``WEBHOOK_RECEIPT_KEEP_DAYS``, a batch at a time
    (short transactions beside live webhooks); returns how many went.

    A receipt only stops a replay of its event, and a replay that old is refused
    anyway: a node's signature is valid for minutes, and LiveKit stops retrying long
    before. Without this the table grows by one row per webhook, forever."""
    cutoff = timezone.now() - timedelta(days=settings.WEBHOOK_RECEIPT_KEEP_DAYS)
    total = 0
    while True:
        batch = list(
            WebhookReceipt.objects.filter(received_at__lt=cutoff)
            .order_by()
            .values_list("pk", flat=True)[:PURGE_BATCH]
        )
        if not batch:
            break
        total += WebhookReceipt.objects.filter(pk__in=batch).delete()[0]
    logger.info("Webhook receipts purged: %s", total)
    return total
