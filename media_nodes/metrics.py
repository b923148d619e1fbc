"""Prometheus metrics of placement and node health (exposed with the others)."""

from prometheus_client import Counter, Histogram

ALLOCATIONS = Counter("visio_allocations_total", "Rooms placed on a media node", ["outcome"])
NO_NODE = Counter(
    "visio_allocation_no_node_total", "Allocations refused: no node could take the room"
)
NODE_DOWN = Counter("visio_media_node_down_total", "Media nodes detected down", ["node"])
ROOMS_MOVED = Counter("visio_rooms_moved_total", "Live rooms moved to another node", ["reason"])
ALLOCATION_SECONDS = Histogram(
    "visio_allocation_seconds",
    "Time to place a room",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)
