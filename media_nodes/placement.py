"""The placement rule and the release rule, each written once, in SQL.

Placing a room is one statement: lock the room, find its live allocation or choose
a node, reserve the room's expected size on it and record the allocation. A node is
eligible when it is active, up, carries every residency tag of the room's ministry
(JSONB containment) and has room for the expected size over the larger of its
reserved and observed loads. Among the eligible nodes, the caller's region comes
first, then the node least filled after placement, then the name.

``SKIP LOCKED`` makes simultaneous placements take different nodes instead of
queueing on (and piling onto) the least loaded one, so a burst of meetings starting
at 9 o'clock spreads at once. When every eligible node is locked, the statement runs
again waiting for the locks. The database refuses an overbooked node (check
constraint) and a second live allocation of a room (partial unique index), whatever
the code above does.

Releasing is one statement too: close the live allocation and give its reservation
back to its node, in one round trip.

The statements read two tables of other apps (``rooms_room`` for the room's size and
its row lock, ``accounts_ministry`` for the residency tags) and write only this
app's tables. ``media_nodes.allocations`` calls them with metrics and the audit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from django.db import IntegrityError, connection, transaction
from django.utils.translation import gettext as _

from controlplane.errors import Outage
from media_nodes.models import MediaNode


class NoNodeAvailable(Outage):
    """No active, healthy node carrying the required tags has room for the meeting
    (503 ``no_node`` in the error table: try again in a minute)."""

    code = "no_node"
    retry_after = 60

    def __init__(self, *, size: int, tags: Iterable[str]):
        self.size = size
        self.tags = sorted(tags)
        super().__init__(
            _(
                "No videoconference server can host this meeting right now. "
                "The operators have been alerted; please try again in a few minutes."
            )
        )


class RoomGone(Exception):
    """The room does not exist (any more) or was deleted: there is nothing to place."""


# The rule. ``{lock}`` is ``SKIP LOCKED`` (the first try) or empty (wait for the
# locks). The room's row lock serialises placements of one room. The placed or already
# live room's placement request (see ``PlacementRequest``) has its answer: deleted in
# the same statement. Answers one row: ``placed`` or ``existing`` with the allocation
# and its node, ``gone`` for a room that is not there; no row when no node was found.
PLACE_SQL = """
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
      AND n.state = %(active)s AND n.is_up
      AND n.tags @> r.tags
      AND GREATEST(n.reserved_participants, n.observed_participants) + r.size <= n.capacity
      AND NOT (n.id = ANY(%(exclude)s::uuid[]))
    ORDER BY (n.region = %(region)s) DESC,
             (GREATEST(n.reserved_participants, n.observed_participants) + r.size)::float
                 / n.capacity,
             n.name
    LIMIT 1
    FOR UPDATE OF n {lock}
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
UNION ALL
SELECT 'gone', NULL::uuid, NULL::uuid WHERE NOT EXISTS (SELECT 1 FROM r)
"""

# What a refusal reports: the room's size and its ministry's tags.
REFUSAL_SQL = """
SELECT r.expected_size, COALESCE(m.residency_tags, '[]'::jsonb)::text
FROM rooms_room r JOIN accounts_ministry m ON m.id = r.ministry_id WHERE r.id = %(room)s
"""


@dataclass(frozen=True)
class Placement:
    """Where a room's live meeting is: its allocation and node, and whether this call
    placed it or found it live."""

    outcome: Literal["placed", "existing"]
    allocation_id: UUID
    node_id: UUID


def place(*, room_id, region: str | None = None, exclude: Iterable = ()) -> Placement:
    """Place the room (or find its live allocation), by the rule above. Raises
    RoomGone, or NoNodeAvailable when no node can take it.

    Outside a transaction each statement commits on its own (autocommit: one round
    trip); inside one, a savepoint keeps the caller's transaction usable when a
    concurrent placement of the same room ends in the unique index."""
    params = {
        "room": str(room_id),
        "region": region or "",
        "exclude": [str(pk) for pk in exclude],
        "active": MediaNode.State.ACTIVE,
    }
    # SKIP LOCKED first; then wait for the locks (a node locked by another placement
    # may still have room once it commits; waiting, the statement takes the first
    # node that still fits once its lock is free). A unique violation means another
    # placement of this room committed after this statement's snapshot: the next
    # statement sees it live.
    lock, conflict = "SKIP LOCKED", None
    for _attempt in range(5):
        try:
            row = _one_row(PLACE_SQL.format(lock=lock), params)
        except IntegrityError as exc:
            conflict = exc
            continue
        if row is None:
            if not lock:
                break
            lock = ""
            continue
        outcome, allocation_id, node_id = row
        if outcome == "gone":
            raise RoomGone(str(room_id))
        return Placement(outcome=outcome, allocation_id=allocation_id, node_id=node_id)
    else:  # pragma: no cover - five conflicting placements of one room in a row
        raise conflict or RuntimeError("placement did not settle")
    refused = _one_row(REFUSAL_SQL, {"room": str(room_id)})
    if refused is None:
        raise RoomGone(str(room_id))
    size, tags = refused
    raise NoNodeAvailable(size=size, tags=json.loads(tags))


def _one_row(sql: str, params: dict):
    block = transaction.atomic() if connection.in_atomic_block else nullcontext()
    with block, connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


# The release rule: lock the live allocation (``{skip}``: SKIP LOCKED for movers that
# leave a room another mover holds), close it with its reason and give its reservation
# back. ``{match}`` chooses it by its id or by its room's id (at most one is live).
RELEASE_SQL = """
WITH a AS (
    SELECT a.id, a.room_id, a.node_id, a.reserved FROM media_nodes_allocation a
    WHERE {match} AND a.closed_at IS NULL
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


@dataclass(frozen=True)
class Released:
    """The allocation just closed: its room, and the node (and region) it left."""

    room_id: UUID
    node_id: UUID
    region: str


def release(
    *, allocation_id=None, room_id=None, reason: str, skip_locked: bool = False
) -> Released | None:
    """Close a live allocation (given by its id, or by its room) and give its
    reservation back; None when it was not live (or, with ``skip_locked``, is being
    moved by someone else). Inside the caller's transaction when there is one."""
    if (allocation_id is None) == (room_id is None):
        raise TypeError("release takes allocation_id or room_id, not both")
    match = "a.id = %(key)s" if allocation_id is not None else "a.room_id = %(key)s"
    sql = RELEASE_SQL.format(match=match, skip="SKIP LOCKED" if skip_locked else "")
    with connection.cursor() as cursor:
        cursor.execute(sql, {"key": str(allocation_id or room_id), "reason": reason})
        row = cursor.fetchone()
    return Released(*row) if row else None
