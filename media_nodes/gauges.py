"""Gauges of media nodes read at scrape time (nodes by state and health, live
allocations, rooms waiting for a drainer), registered by ``MediaNodesConfig.ready``:
they describe PostgreSQL and Redis, so they are right whichever process answers."""

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily

from media_nodes import queueing
from media_nodes.models import Allocation, MediaNode


def nodes_and_allocations() -> list[GaugeMetricFamily]:
    """Nodes by state and health, and rooms placed now (read from PostgreSQL)."""
    nodes = GaugeMetricFamily(
        "visio_media_nodes",
        "Media nodes by state (what operators decided) and health (what probes see)",
        labels=["state", "health"],
    )
    counted = {
        (row["state"], "up" if row["is_up"] else "down"): row["n"]
        for row in MediaNode.objects.values("state", "is_up").annotate(n=Count("id"))
    }
    for state in MediaNode.State.values:
        for health in ("up", "down"):
            nodes.add_metric([state, health], counted.get((state, health), 0))
    live = GaugeMetricFamily("visio_live_allocations", "Rooms currently placed on a media node")
    live.add_metric([], Allocation.objects.filter(closed_at__isnull=True).count())
    return [nodes, live]


def placement_pending() -> list[GaugeMetricFamily]:
    """Rooms waiting on the coalesced placement list (read from Redis)."""
    pending = GaugeMetricFamily(
        "visio_allocation_pending",
        "Rooms waiting on the coalesced placement list for a drainer",
    )
    pending.add_metric([], queueing.client().llen(queueing.PENDING))
    return [pending]
