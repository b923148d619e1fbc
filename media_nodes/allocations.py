"""Allocations of live rooms to media nodes: what other apps ask of this one.

``rooms`` places a room for a join, finds its live allocation, releases it when the
room is deleted or its meeting finishes; the failover and drain tasks move rooms off
a node. Every write goes through the two rules of ``media_nodes.placement``, with the
placement metrics, and an error log, a metric and an audit event when no node can
host a meeting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from django.db.models import F, Value
from django.db.models.functions import Greatest

from audit.actor import Actor
from audit.services import audit_record
from media_nodes import metrics, placement
from media_nodes.models import Allocation, MediaNode, PlacementRequest
from media_nodes.placement import NoNodeAvailable, Placement, Released, RoomGone

logger = logging.getLogger(__name__)


def allocation_place(*, room_id, region: str | None = None, exclude: Iterable = ()) -> Placement:
    """The room's live allocation, placing it first if it has none (idempotent: twice
    for the same room gives the same allocation). Raises RoomGone, or NoNodeAvailable
    (after telling the operators)."""
    started = time.perf_counter()
    try:
        placed = placement.place(room_id=room_id, region=region, exclude=exclude)
    except (NoNodeAvailable, RoomGone) as exc:
        placement_request_answered(room_id=room_id)  # beat must not ask again
        if isinstance(exc, NoNodeAvailable):
            _no_node_alert(room_id=room_id, region=region, refusal=exc, started=started)
        raise
    metrics.allocation_observe(placed.outcome, started)
    return placed


def _no_node_alert(*, room_id, region, refusal: NoNodeAvailable, started: float) -> None:
    metrics.NO_NODE.inc()
    metrics.allocation_observe("no_node", started)
    logger.error(
        "No media node can host room %s (size %s, tags %s)", room_id, refusal.size, refusal.tags
    )
    audit_record(
        actor=Actor.system("allocation"),
        action="allocation.no_node",
        # The room, named through the allocation's foreign key (this app is below rooms).
        target=Allocation._meta.get_field("room").related_model(pk=room_id),
        data={"size": refusal.size, "tags": refusal.tags, "region": region},
    )


def allocation_live(*, room_id) -> Allocation | None:
    """The room's live allocation on a healthy node (with its node), or None if it has
    none. A room still on a dead node (failover has not reached it yet) is moved at
    once."""
    allocation = allocation_live_get(room_id=room_id)
    if allocation is None or allocation.node.is_up:
        return allocation
    allocation_move(allocation_id=allocation.pk, reason=Allocation.Reason.NODE_DOWN)
    return allocation_live_get(room_id=room_id)


def allocation_live_get(*, room_id, node_id=None) -> Allocation | None:
    """The room's live allocation (on ``node_id`` when given), with its node; a read."""
    live = Allocation.objects.filter(room_id=room_id, closed_at__isnull=True)
    if node_id is not None:
        live = live.filter(node_id=node_id)
    return live.select_related("node").first()


def allocation_release(
    *, allocation_id=None, room_id=None, reason: str, skip_locked: bool = False
) -> Released | None:
    """Close a live allocation (by its id, or the live one of a room) and give its
    reservation back; None when there was none. Inside the caller's transaction."""
    return placement.release(
        allocation_id=allocation_id, room_id=room_id, reason=reason, skip_locked=skip_locked
    )


def allocation_move(*, allocation_id, reason: str, skip_locked: bool = False) -> bool:
    """Close an allocation (node down, drained) and place its room again elsewhere.
    False when no node could take it (the room is placed again at its next join).

    With ``skip_locked``, an allocation locked by another mover is left to it: the
    batches moving a dead node's rooms run in parallel over the same list, and would
    otherwise queue behind one another, row after row. A join waits instead, so that
    it never reads the room's old allocation while it is being moved."""
    released = placement.release(
        allocation_id=allocation_id, reason=reason, skip_locked=skip_locked
    )
    if released is None:
        return True
    metrics.ROOMS_MOVED.labels(reason=reason).inc()
    try:
        allocation_place(
            room_id=released.room_id, region=released.region, exclude=[released.node_id]
        )
    except (NoNodeAvailable, RoomGone):
        return False
    return True


def placement_request_answered(*, room_id) -> None:
    """The room's placement request, if any, has its answer (placed, already live,
    refused, or the room is gone): beat's sweep must not ask again."""
    PlacementRequest.objects.filter(room_id=room_id).delete()


def media_node_observed_add(*, node_id, delta: int) -> None:
    """Move a node's observed load (what its webhooks report), never below zero."""
    if delta:
        MediaNode.objects.filter(pk=node_id).update(
            observed_participants=Greatest(F("observed_participants") + delta, Value(0))
        )
