"""Gauge of each ministry's current directory token's time left, read at scrape time
(registered by ``ScimConfig.ready``): an alert on it (below
``SCIM_TOKEN_WARN_DAYS``) warns before a directory's sync stops on an expired token."""

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from scim.models import DirectoryToken


def directory_token_expiry() -> list[GaugeMetricFamily]:
    """Seconds until each ministry's current directory token expires (negative once
    expired); ministries without a current token have no sample."""
    gauge = GaugeMetricFamily(
        "visio_directory_token_expires_in_seconds",
        "Seconds until the ministry's current directory (SCIM) token expires",
        labels=["ministry"],
    )
    now = timezone.now()
    current = DirectoryToken.objects.filter(
        revoked_at__isnull=True, replaced_at__isnull=True
    ).values_list("ministry__code", "expires_at")
    for code, expires_at in current.order_by("ministry__code"):
        gauge.add_metric([code], (expires_at - now).total_seconds())
    return [gauge]
