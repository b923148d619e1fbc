"""Writes on media nodes: operators' decisions (add, cordon, drain, enable, remove),
probe outcomes (health with hysteresis), failover of a dead node's rooms, drains and
reconciliation with what nodes really host."""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import require_operator
from audit.actor import Actor
from audit.services import audit_record
from media_nodes import crypto, metrics
from media_nodes.allocations import allocation_move, allocation_release
from media_nodes.driver import NodeError, driver_for
from media_nodes.models import Allocation, MediaNode

logger = logging.getLogger(__name__)


def _clean_tags(tags) -> list[str]:
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValidationError({"tags": _("Tags are a list of words.")})
    cleaned = sorted({t.strip().lower() for t in tags if t.strip()})
    for tag in cleaned:
        if not tag.replace("-", "").replace("_", "").isalnum():
            raise ValidationError({"tags": _("“%(tag)s” is not a valid tag.") % {"tag": tag}})
    return cleaned


def node_add(
    *,
    actor: Actor,
    name: str,
    url: str,
    api_key: str,
    api_secret: str,
    region: str,
    capacity: int,
    tags=(),
    check: bool = True,
) -> MediaNode:
    """Register a node after checking its credentials against its API (ListRooms)."""
    require_operator(actor)
    if MediaNode.objects.filter(name=name).exists():
        raise ValidationError({"name": _("A node with this name already exists.")})
    if len(api_secret or "") < 32:
        raise ValidationError(
            {
                "api_secret": _(
                    "The API secret must be at least 32 characters long (as LiveKit requires)."
                )
            }
        )
    if capacity < 1:
        raise ValidationError({"capacity": _("The capacity must be at least 1 participant.")})
    node = MediaNode(
        name=name,
        url=url,
        api_key=api_key,
        region=region,
        capacity=capacity,
        tags=_clean_tags(list(tags)),
    )
    node.api_secret = api_secret
    node.full_clean(exclude=["api_secret_encrypted"])
    if check:
        try:
            driver_for(node).list_rooms()
        except NodeError as exc:
            raise ValidationError(
                {"url": _("The node's API refused or did not answer: %(error)s") % {"error": exc}}
            ) from None
    with transaction.atomic():
        node.last_heartbeat_at = timezone.now() if check else None
        node.save(force_insert=True)
        audit_record(
            actor=actor,
            action="media_node.add",
            target=node,
            data={"name": name, "url": url, "region": region, "capacity": capacity},
        )
    return node


@transaction.atomic
def node_set_state(
    *, actor: Actor, node: MediaNode, state: str, deadline: datetime | None = None
) -> MediaNode:
    """Cordon (no new rooms, live ones stay), drain (no new rooms; released when empty,
    its rooms moved at the deadline), or enable again."""
    require_operator(actor)
    if state not in MediaNode.State.values:
        raise ValidationError({"state": _("Unknown state.")})
    node = MediaNode.objects.select_for_update().get(pk=node.pk)
    before = node.state
    node.state = state
    node.drain_deadline = deadline if state == MediaNode.State.DRAINING else None
    node.save(update_fields=["state", "drain_deadline", "updated_at"])
    audit_record(
        actor=actor,
        action="media_node.state",
        target=node,
        data={
            "from": before,
            "to": state,
            "deadline": deadline.isoformat() if deadline else None,
        },
    )
    return node


@transaction.atomic
def node_remove(*, actor: Actor, node: MediaNode) -> None:
    """Remove a node; refused while it hosts live rooms (drain it first)."""
    require_operator(actor)
    node = MediaNode.objects.select_for_update().get(pk=node.pk)
    live = Allocation.objects.filter(node=node, closed_at__isnull=True).count()
    if live:
        raise ValidationError(
            {
                "node": _("This node hosts %(count)s live meetings: drain it before removing it.")
                % {"count": live}
            }
        )
    audit_record(actor=actor, action="media_node.remove", target=node, data={"name": node.name})
    Allocation.objects.filter(node=node).delete()
    node.delete()


@transaction.atomic
def node_secrets_reencrypt(*, actor: Actor) -> int:
    """Encrypt every node's API secret again with the newest MEDIA_NODE_SECRET_KEYS key
    (the last step of a key rotation); returns how many were. All or nothing: a secret
    that no listed key opens stops the whole run."""
    require_operator(actor)
    nodes = list(MediaNode.objects.select_for_update().order_by("name"))
    for node in nodes:
        try:
            node.api_secret_encrypted = crypto.reencrypt(node.api_secret_encrypted)
        except ValueError:
            raise ValidationError(
                {
                    "api_secret": _(
                        "The API secret of node “%(name)s” opens with none of the keys "
                        "of MEDIA_NODE_SECRET_KEYS."
                    )
                    % {"name": node.name}
                }
            ) from None
    MediaNode.objects.bulk_update(nodes, ["api_secret_encrypted"])
    audit_record(actor=actor, action="media_node.secrets_reencrypt", data={"nodes": len(nodes)})
    return len(nodes)


# -- Health ---------------------------------------------------------------------


def probe_record(node_id, *, ok: bool, now=None, observed: int | None = None) -> str | None:
    """Record one probe; returns "down" or "up" when the node's health flips.

    Down after MEDIA_NODE_DOWN_AFTER_FAILURES failures in a row; back up only after
    MEDIA_NODE_UP_AFTER_SUCCESSES successes in a row.
    """
    now = now or timezone.now()
    with transaction.atomic():
        node = MediaNode.objects.select_for_update().get(pk=node_id)
        flipped = None
        if ok:
            node.consecutive_successes += 1
            node.consecutive_failures = 0
            node.last_heartbeat_at = now
            if observed is not None:
                node.observed_participants = observed
            if (
                not node.is_up
                and node.consecutive_successes >= settings.MEDIA_NODE_UP_AFTER_SUCCESSES
            ):
                node.is_up, node.down_since, flipped = True, None, "up"
        else:
            node.consecutive_failures += 1
            node.consecutive_successes = 0
            if node.is_up and node.consecutive_failures >= settings.MEDIA_NODE_DOWN_AFTER_FAILURES:
                node.is_up, node.down_since, flipped = False, now, "down"
        node.save(
            update_fields=[
                "consecutive_successes",
                "consecutive_failures",
                "last_heartbeat_at",
                "observed_participants",
                "is_up",
                "down_since",
                "updated_at",
            ]
        )
        if flipped:
            audit_record(
                actor=Actor.system("health"),
                action=f"media_node.{flipped}",
                target=node,
                data={"failures": node.consecutive_failures},
            )
    if flipped == "down":
        logger.error("Media node %s is down: its live rooms are being moved", node.name)
        metrics.NODE_DOWN.labels(node=node.name).inc()
    elif flipped == "up":
        logger.warning("Media node %s is back up", node.name)
    return flipped


def probe_call(node: MediaNode) -> int | None:
    """Call the node (ListRooms, short timeout): its participants, or None if it failed.
    No database access: probes of all nodes run in parallel threads."""
    try:
        rooms = driver_for(node).list_rooms()
    except NodeError:
        return None
    return sum(r.participants for r in rooms)


# -- Moving rooms -----------------------------------------------------------------


def live_allocations(node_id, limit: int):
    return list(
        Allocation.objects.filter(node_id=node_id, closed_at__isnull=True)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )


def move_rooms(node_id, *, reason: str, limit: int) -> tuple[int, int]:
    """Move up to ``limit`` live rooms off a node (closed with ``reason``, placed again
    elsewhere). Returns (moved, unplaced)."""
    moved = unplaced = 0
    for pk in live_allocations(node_id, limit):
        if allocation_move(allocation_id=pk, reason=reason, skip_locked=True):
            moved += 1
        else:
            unplaced += 1
    return moved, unplaced


def drain_step(node: MediaNode, now=None) -> str:
    """One step of a drain: released when empty; at the deadline, rooms move."""
    now = now or timezone.now()
    live = Allocation.objects.filter(node=node, closed_at__isnull=True).exists()
    if not live:
        with transaction.atomic():
            MediaNode.objects.filter(pk=node.pk, state=MediaNode.State.DRAINING).update(
                state=MediaNode.State.CORDONED, drain_deadline=None
            )
            audit_record(
                actor=Actor.system("drain"),
                action="media_node.drained",
                target=node,
                data={"name": node.name},
            )
        return "released"
    if node.drain_deadline and node.drain_deadline <= now:
        return "deadline"  # the caller moves the rooms, in batches on every worker
    return "waiting"


def reconcile(node: MediaNode) -> dict:
    """Compare the node's rooms with its live allocations and mend the differences:
    a live allocation whose room vanished from the node (and that is older than a
    probe period, so a meeting about to start is left alone) is closed; a room
    nobody allocated here is deleted from the node."""
    rooms = {r.name: r for r in driver_for(node).list_rooms()}
    grace = timezone.now() - timezone.timedelta(seconds=60)
    live = {
        a.room.slug: a
        for a in Allocation.objects.filter(node=node, closed_at__isnull=True).select_related("room")
    }
    closed = deleted = 0
    for slug, allocation in live.items():
        if slug not in rooms and allocation.created_at < grace:
            released = allocation_release(
                allocation_id=allocation.pk, reason=Allocation.Reason.VANISHED
            )
            closed += released is not None
    for name in rooms:
        if name not in live:
            driver_for(node).delete_room(name)
            deleted += 1
            logger.warning(
                "Room %s was on node %s without a live allocation: deleted", name, node.name
            )
    observed = sum(r.participants for name, r in rooms.items() if name in live)
    MediaNode.objects.filter(pk=node.pk).update(observed_participants=observed)
    return {"closed": closed, "deleted": deleted, "observed": observed}
