"""Gauges of the directory tokens, read at scrape time (registered by
``ScimConfig.ready``): an alert on them warns before a directory's sync stops on an
expired token. No ministry is named (``/metrics`` stays free of tenants); the console
shows the admin which token it is."""

from django.db.models import Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from scim.models import DirectoryToken


def directory_token_expiry() -> list[GaugeMetricFamily]:
    """Tokens by state (expired: a ministry's current token, whose sync has stopped),
    and the time left to the soonest expiry of a current token (absent when none)."""
    by_state = GaugeMetricFamily(
        "visio_directory_tokens",
        "Directory (SCIM) tokens current or in their overlap, by state",
        labels=["state"],
    )
    now = timezone.now()
    counts = dict.fromkeys(["active", "expiring", "overlap", "expired"], 0)
    soonest = None
    # Current tokens (expired ones included: a sync that stopped) and replaced ones
    # still in their overlap; a replaced token past its overlap is history.
    tokens = DirectoryToken.objects.filter(
        Q(replaced_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True
    )
    for token in tokens.only("expires_at", "replaced_at", "revoked_at"):
        counts[token.state(now=now)] += 1
        if token.replaced_at is None and (soonest is None or token.expires_at < soonest):
            soonest = token.expires_at
    for state, count in counts.items():
        by_state.add_metric([state], count)
    families = [by_state]
    if soonest is not None:
        families.append(
            GaugeMetricFamily(
                "visio_directory_token_soonest_expiry_seconds",
                "Seconds until the first ministry's current directory token expires "
                "(negative once expired)",
                value=(soonest - now).total_seconds(),
            )
        )
    return families
