"""Placement of live rooms on media nodes, with the reservation taken in the same
transaction as the choice.

Placement never reads a load figure seconds old: ``reserved_participants`` moves
inside the transaction that places a room, under the chosen node's row lock.
Candidates are ordered by region preference, then by load after placement
relative to capacity; ``SKIP LOCKED`` makes concurrent placements take different
nodes instead of queueing on (and piling onto) the least loaded one, so a burst
of meetings starting at 9 o'clock spreads at once. The database refuses an
overbooked node (check constraint), and a room has at most one live allocation
(partial unique index), whatever the code above does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import nullcontext

from django.db import transaction
from django.db.models import Case, F, FloatField, IntegerField, Value, When
from django.db.models.functions import Cast, Greatest
from django.utils import timezone
from django.utils.translation import gettext as _

from media_nodes.models import Allocation, MediaNode, PlacementRequest

logger = logging.getLogger(__name__)


class NoNodeAvailable(Exception):
    """No active, healthy node carrying the required tags has room for the meeting."""

    def __init__(self, *, size: int, tags: Iterable[str]):
        self.size = size
        self.tags = sorted(tags)
        super().__init__(
            _(
                "No videoconference server can host this meeting right now. "
                "The operators have been alerted; please try again in a few minutes."
            )
        )


def tagged(nodes: Iterable[MediaNode], tags: Iterable[str]) -> list:
    """Ids of the nodes carrying every tag (checked in Python: JSON containment is not
    portable, and there are tens of nodes, not millions)."""
    wanted = set(tags)
    return [node.pk for node in nodes if wanted <= set(node.tags or [])]


def eligible(*, size: int, tags: Iterable[str] = (), exclude: Iterable = ()):
    """Nodes that may take a room of ``size`` participants now."""
    candidates = MediaNode.objects.filter(state=MediaNode.State.ACTIVE, is_up=True).exclude(
        pk__in=list(exclude)
    )
    ids = tagged(candidates.only("id", "tags"), tags)
    return (
        MediaNode.objects.filter(pk__in=ids)
        .annotate(current_load=Greatest("reserved_participants", "observed_participants"))
        .filter(current_load__lte=F("capacity") - size)
    )


def _ordered(queryset, *, size: int, region: str | None):
    return queryset.annotate(
        elsewhere=Case(
            When(region=region or "", then=Value(0)), default=Value(1), output_field=IntegerField()
        ),
        fill=Cast(F("current_load") + size, FloatField()) / Cast(F("capacity"), FloatField()),
    ).order_by("elsewhere", "fill", "name")


def reserve(
    *, size: int, tags: Iterable[str] = (), region: str | None = None, exclude: Iterable = ()
) -> MediaNode:
    """Choose a node and reserve ``size`` participants on it; must run inside the
    transaction that records the allocation. Raises NoNodeAvailable."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("reserve must run inside the allocating transaction")
    tags = list(tags)
    exclude = list(exclude)
    for skip_locked in (True, False):
        queryset = _ordered(
            eligible(size=size, tags=tags, exclude=exclude), size=size, region=region
        )
        node = queryset.select_for_update(skip_locked=skip_locked, of=("self",)).first()
        if node is None:
            continue
        # The row is locked: this is the node's latest committed load.
        updated = MediaNode.objects.filter(
            pk=node.pk, reserved_participants__lte=F("capacity") - size
        ).update(reserved_participants=F("reserved_participants") + size)
        if updated:
            node.reserved_participants += size
            return node
        exclude.append(node.pk)
    raise NoNodeAvailable(size=size, tags=tags)


def release(allocation: Allocation, reason: str) -> bool:
    """Close a live allocation and give its reservation back; False if already closed.
    Runs inside the caller's transaction."""
    closed = Allocation.objects.filter(pk=allocation.pk, closed_at__isnull=True).update(
        closed_at=timezone.now(), close_reason=reason
    )
    if closed:
        MediaNode.objects.filter(pk=allocation.node_id).update(
            reserved_participants=Greatest(
                F("reserved_participants") - allocation.reserved, Value(0)
            )
        )
    return bool(closed)


# ``release`` of one allocation in one round trip on PostgreSQL (its own transaction in
# autocommit, as on a worker): lock the live allocation (SKIP LOCKED when asked), close
# it and give its reservation back. Returns its room, node and the node's region; no
# row when it was already closed, or locked by someone else who is moving it.
RELEASE_SQL = """
WITH a AS (
    SELECT a.id, a.room_id, a.node_id, a.reserved FROM media_nodes_allocation a
    WHERE a.id = %(allocation)s AND a.closed_at IS NULL
    FOR UPDATE OF a {skip}
), closed AS (
    UPDATE media_nodes_allocation x SET closed_at = now(), close_reason = %(reason)s
    FROM a WHERE x.id = a.id
), node AS (
    UPDATE media_nodes_medianode n
    SET reserved_participants = GREATEST(n.reserved_participants - a.reserved, 0)
    FROM a WHERE n.id = a.node_id
    RETURNING n.id, n.region
)
SELECT a.room_id, a.node_id, node.region FROM a JOIN node ON node.id = a.node_id
"""


def release_in_one_statement(*, allocation_id, reason: str, skip_locked: bool):
    """(room id, node id, node region) of the allocation just released; None when it
    was not live (or, with ``skip_locked``, locked by another mover). PostgreSQL
    only; inside the caller's transaction when there is one."""
    from django.db import connection

    sql = RELEASE_SQL.format(skip="SKIP LOCKED" if skip_locked else "")
    with connection.cursor() as cursor:
        cursor.execute(sql, {"allocation": str(allocation_id), "reason": reason})
        return cursor.fetchone()


def request_answered(room_id) -> None:
    """The room's placement request, if any, has its answer (placed, already live, or
    refused): beat's sweep must not ask again."""
    PlacementRequest.objects.filter(room_id=room_id).delete()


# One round trip on PostgreSQL: lock the room, find its live allocation or choose a
# node (same rule as ``reserve``: region first, then fill after placement, SKIP
# LOCKED), reserve on it and record the allocation. Returns no row when nothing was
# found without waiting (no eligible node, or all of them locked): the caller then
# takes the general path, which waits for locks and raises NoNodeAvailable. A placed
# or already live room's placement request (see ``PlacementRequest``) is answered:
# deleted in the same statement.
ALLOCATE_SQL = """
WITH r AS (
    SELECT r.id, r.expected_size AS size, COALESCE(m.residency_tags, '[]'::jsonb) AS tags
    FROM rooms_room r JOIN accounts_ministry m ON m.id = r.ministry_id
    WHERE r.id = %(room)s AND r.deleted_at IS NULL
    FOR UPDATE OF r
), live AS (
    SELECT a.id, a.node_id FROM media_nodes_allocation a JOIN r ON a.room_id = r.id
    WHERE a.closed_at IS NULL
), pick AS (
    SELECT n.id FROM media_nodes_medianode n, r
    WHERE NOT EXISTS (SELECT 1 FROM live)
      AND n.state = 'active' AND n.is_up
      AND n.tags @> r.tags
      AND GREATEST(n.reserved_participants, n.observed_participants) + r.size <= n.capacity
      AND n.reserved_participants + r.size <= n.capacity
      AND NOT (n.id = ANY(%(exclude)s::uuid[]))
    ORDER BY (n.region = %(region)s) DESC,
             (GREATEST(n.reserved_participants, n.observed_participants) + r.size)::float
                 / n.capacity,
             n.name
    LIMIT 1
    FOR UPDATE OF n SKIP LOCKED
), upd AS (
    UPDATE media_nodes_medianode n
    SET reserved_participants = n.reserved_participants + r.size
    FROM pick, r WHERE n.id = pick.id
    RETURNING n.id
), ins AS (
    INSERT INTO media_nodes_allocation
        (id, created_at, updated_at, room_id, node_id, reserved, close_reason)
    SELECT gen_random_uuid(), now(), now(), r.id, upd.id, r.size, '' FROM upd, r
    RETURNING id, node_id
), answered AS (
    DELETE FROM media_nodes_placementrequest p USING r
    WHERE p.room_id = r.id AND (EXISTS (SELECT 1 FROM ins) OR EXISTS (SELECT 1 FROM live))
)
SELECT 'placed', id, node_id FROM ins
UNION ALL
SELECT 'existing', id, node_id FROM live
"""


def allocate_in_one_statement(*, room_id, region: str | None, exclude=()):
    """(outcome, allocation id, node id), or None when the general path must decide.
    PostgreSQL only; a concurrent placement of the same room that this statement's
    snapshot could not see ends in the unique index, and the caller retries."""
    from django.db import IntegrityError, connection

    if connection.vendor != "postgresql":
        return None
    params = {"room": str(room_id), "region": region or "", "exclude": [str(e) for e in exclude]}
    # One statement is one transaction of its own: outside a transaction it runs in
    # autocommit (one round trip instead of BEGIN, statement, COMMIT); inside one, a
    # savepoint keeps the caller's transaction usable after an IntegrityError.
    block = transaction.atomic() if connection.in_atomic_block else nullcontext()
    try:
        with block, connection.cursor() as cursor:
            cursor.execute(ALLOCATE_SQL, params)
            row = cursor.fetchone()
    except IntegrityError:
        return None
    return row
