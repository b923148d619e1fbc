"""Prometheus metrics of placement and node health (exposed with the others).

Placements happen in Celery workers (the ``allocation`` queue) and, in eager mode or
on a failover, in web processes: see ``controlplane.metrics`` for how the processes'
figures are gathered. The gauges read at scrape time are in ``media_nodes.gauges``.
"""

import time

from prometheus_client import Counter, Histogram

ALLOCATIONS = Counter(
    "visio_allocations_total",
    "Placement requests by outcome: placed on a node, existing (already live), no_node",
    ["outcome"],
)
NO_NODE = Counter(
    "visio_allocation_no_node_total", "Allocations refused: no node could take the room"
)
NODE_DOWN = Counter("visio_media_node_down_total", "Media nodes detected down", ["node"])
ROOMS_MOVED = Counter("visio_rooms_moved_total", "Live rooms moved to another node", ["reason"])
ALLOCATION_SECONDS = Histogram(
    "visio_allocation_seconds",
    "Time to answer a placement request, by outcome",
    ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5),
)


def allocation_observe(outcome: str, started: float) -> None:
    """Count one placement request and its duration since ``started`` (perf_counter)."""
    ALLOCATIONS.labels(outcome=outcome).inc()
    ALLOCATION_SECONDS.labels(outcome=outcome).observe(time.perf_counter() - started)
