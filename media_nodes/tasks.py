"""Background work of media nodes: placing rooms, probing nodes, moving the rooms of
dead or drained nodes, and reconciling allocations with what nodes host."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from celery import shared_task
from django.conf import settings
from django.db import OperationalError
from django.db.utils import InterfaceError

from media_nodes import queueing, services
from media_nodes.driver import NodeError
from media_nodes.models import Allocation, MediaNode

logger = logging.getLogger(__name__)


@shared_task(
    name="media_nodes.tasks.room_allocate_task",
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=3,
    soft_time_limit=20,
    time_limit=30,
)
def room_allocate_task(room_id: str, region: str | None = None) -> dict:
    """Place a room (or find its live allocation); the outcome is a value (see
    ``queueing.place_now``)."""
    return queueing.place_now(room_id, region)


@shared_task(
    name="media_nodes.tasks.room_allocate_drain",
    soft_time_limit=120,
    time_limit=150,
    ignore_result=True,
)
def room_allocate_drain(slot: int) -> int:
    """Place the rooms joins asked for, in batches (see ``media_nodes.queueing``)."""
    return queueing.drain(slot, queueing.place_outcome)


@shared_task(
    name="media_nodes.tasks.room_placement_sweep",
    soft_time_limit=60,
    time_limit=90,
    ignore_result=True,
)
def room_placement_sweep() -> int:
    """Ask again for the rooms whose placement request Redis lost (restarted, or a
    drainer died): beat runs it every PLACEMENT_SWEEP_EVERY_SECONDS."""
    return queueing.sweep(older_than_seconds=settings.PLACEMENT_SWEEP_EVERY_SECONDS)


@shared_task(name="media_nodes.tasks.room_move_off_node", soft_time_limit=120, time_limit=150)
def room_move_off_node(node_id: str, reason: str) -> dict:
    """Move a batch of a node's live rooms, then queue the next batch until none is
    left; batches run on every allocation worker at once."""
    moved, unplaced = services.move_rooms(
        node_id, reason=reason, limit=settings.MEDIA_NODE_REPLACE_BATCH
    )
    if moved and Allocation.objects.filter(node_id=node_id, closed_at__isnull=True).exists():
        room_move_off_node.delay(node_id, reason)
    return {"moved": moved, "unplaced": unplaced}


def failover(node_id, reason: str = Allocation.Reason.NODE_DOWN) -> None:
    """Start moving a node's rooms (dead, or drained at its deadline): up to 8 batches
    at once, each queueing the next until none is left."""
    live = Allocation.objects.filter(node_id=node_id, closed_at__isnull=True).count()
    batches = max(1, min(8, -(-live // settings.MEDIA_NODE_REPLACE_BATCH)))
    for _ in range(batches):
        room_move_off_node.delay(str(node_id), reason)


@shared_task(name="media_nodes.tasks.media_node_probe_all", soft_time_limit=30, time_limit=40)
def media_node_probe_all() -> dict:
    """Probe every node at once (short timeouts: a hung node costs one timeout, not
    one per node), record health, start failovers and drain steps."""
    nodes = list(MediaNode.objects.all())
    if not nodes:
        return {}

    with ThreadPoolExecutor(max_workers=min(16, len(nodes))) as pool:
        observed = list(pool.map(services.probe_call, nodes))
    flips = {}
    for node, seen in zip(nodes, observed, strict=True):
        flipped = services.probe_record(node.pk, ok=seen is not None, observed=seen)
        node.refresh_from_db(fields=["is_up", "state", "drain_deadline"])
        if flipped:
            flips[node.name] = flipped
        if flipped == "down":
            failover(node.pk)
        elif (
            not flipped
            and not node.is_up
            and Allocation.objects.filter(node=node, closed_at__isnull=True).exists()
        ):
            failover(node.pk)  # rooms still on a dead node (a batch failed earlier)
        draining = node.state == MediaNode.State.DRAINING and node.is_up
        if draining and services.drain_step(node) == "deadline":
            failover(node.pk, reason=Allocation.Reason.DRAINED)
    return flips


@shared_task(name="media_nodes.tasks.media_node_reconcile_all", soft_time_limit=120, time_limit=150)
def media_node_reconcile_all() -> dict:
    """Compare every healthy node's rooms with its allocations and mend differences."""
    report = {}
    for node in MediaNode.objects.filter(is_up=True):
        try:
            report[node.name] = services.reconcile(node)
        except NodeError as exc:
            report[node.name] = {"error": str(exc)}
    return report
