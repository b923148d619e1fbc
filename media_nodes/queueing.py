"""Coalesced placement requests: a burst of joins costs a few Celery messages, not one
per join.

A join that finds its room unplaced records a ``PlacementRequest`` row, pushes the
room onto a Redis list and wakes a drainer if fewer than ``ALLOCATION_DRAINERS`` are
running (one Redis key per drainer slot, with a TTL, so a dead drainer frees its slot
by itself). Drainers are Celery tasks on the ``allocation`` queue; each moves
``ALLOCATION_BATCH`` rooms at a time from the list to its slot's in-flight list (one
atomic script), places them one by one, each in its own short transaction, then
writes the outcome under a per-request key that the waiting joins read and removes
them from its in-flight list. When the list is empty a drainer frees its slot, then
looks once more (a request may have arrived in between).

Nothing is lost when things die:

* a drainer killed mid-batch leaves its rooms on its slot's in-flight list; the next
  drainer of that slot (its own task delivered again, since tasks are acknowledged
  late, or a fresh one) places them first; placement is idempotent;
* Redis restarted (or unreachable) loses the lists: the ``PlacementRequest`` rows
  stay, and beat's ``room_placement_sweep`` pushes those older than
  ``PLACEMENT_SWEEP_EVERY_SECONDS`` again. A join that cannot reach Redis gets
  ``QueueUnavailable`` (the API answers 503 with ``Retry-After``), its request kept.

Without a broker (the demo's eager mode) the placement runs inline.
"""

from __future__ import annotations

import contextlib
import logging
import math
import secrets
from datetime import timedelta

import redis
from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone
from django.utils.translation import gettext as _
from kombu.exceptions import OperationalError as BrokerError

from controlplane.broker import broker_redis
from controlplane.errors import Outage
from media_nodes.allocations import allocation_place, placement_request_answered
from media_nodes.models import PlacementRequest
from media_nodes.placement import NoNodeAvailable, RoomGone

logger = logging.getLogger(__name__)

PENDING = "visio:allocation:pending"
SLOT = "visio:allocation:drainer:{}"
INFLIGHT = "visio:allocation:inflight:{}"  # what the drainer of a slot is placing
OUTCOME = "visio:allocation:outcome:{}"  # one per request (its nonce)
DRAINER_TASK = "media_nodes.tasks.room_allocate_drain"
SLOT_TTL_MS = 15_000
OUTCOME_TTL_S = 60
# Errors that say "try again later", not "this request is bad": a drainer meeting one
# stops with its rooms still in flight, for the next drainer of its slot.
TRANSIENT = (redis.RedisError, OperationalError, InterfaceError)

# Move up to ARGV[1] requests from the pending list to a drainer's in-flight list, at
# once: a drainer that dies right after still has them in Redis.
TAKE = """
local items = redis.call('LPOP', KEYS[1], ARGV[1])
if items then redis.call('RPUSH', KEYS[2], unpack(items)) end
return items
"""


class QueueUnavailable(Outage):
    """Redis (the placement queue and broker) cannot be reached: try again shortly
    (503 ``placement_unavailable`` in the error table; the request is kept)."""

    code = "placement_unavailable"

    def __init__(self):
        super().__init__(
            _("Meetings cannot be started for a moment. Please try again in a few seconds.")
        )

    @property
    def retry_after(self) -> int:
        """Beat asks again for kept requests every PLACEMENT_SWEEP_EVERY_SECONDS."""
        return math.ceil(settings.PLACEMENT_SWEEP_EVERY_SECONDS)


def client() -> redis.Redis:
    """The broker's Redis, where the placement lists live."""
    return broker_redis()


def coalescing() -> bool:
    return bool(settings.CELERY_BROKER_URL) and not current_app.conf.task_always_eager


def place_now(room_id, region: str | None = None) -> dict:
    """Place a room here and now; the outcome as a value (a dict), not an exception,
    so that a full platform does not turn into retry storms: ``allocation`` and
    ``node``, or ``error`` (``no_node`` with its ``detail``, or ``gone``)."""
    try:
        placed = allocation_place(room_id=room_id, region=region)
    except NoNodeAvailable as exc:
        return {"error": "no_node", "detail": str(exc)}
    except RoomGone:  # deleted meanwhile: nothing to place
        return {"error": "gone"}
    return {"allocation": str(placed.allocation_id), "node": str(placed.node_id)}


def place_outcome(room_id: str, region: str | None) -> str:
    """A drainer's placement of one room, as the outcome string the join reads."""
    result = place_now(room_id, region)
    if result.get("error") == "gone":
        return "gone"
    if result.get("error") == "no_node":
        return f"no_node:{result['detail']}"
    return "placed"


def request(room_id, region: str | None = None) -> dict | str:
    """Ask for a room to be placed. Returns the outcome (a dict) when it ran inline
    (eager mode), else the request's nonce, to read its outcome with ``outcome``.
    Raises QueueUnavailable when Redis cannot be reached (the request is kept in the
    database, and beat asks again)."""
    if not coalescing():
        return place_now(str(room_id), region)
    # Durable first: whatever happens to Redis below, beat's sweep finds this row.
    PlacementRequest.objects.bulk_create(
        [PlacementRequest(room_id=room_id, region=region or "")], ignore_conflicts=True
    )
    nonce = secrets.token_hex(8)
    try:
        r = client()
        r.rpush(PENDING, f"{room_id}|{region or ''}|{nonce}")
        wake(r)
    except (redis.RedisError, BrokerError) as exc:
        logger.warning("Placement queue unavailable, room %s kept for beat: %s", room_id, exc)
        raise QueueUnavailable() from exc
    return nonce


def wake(r: redis.Redis, slot: int | None = None) -> bool:
    """Start a drainer on a slot (a random one by default) if that slot is free; the
    running drainers drain everything pushed meanwhile. One Redis call when busy."""
    if slot is None:
        slot = secrets.randbelow(settings.ALLOCATION_DRAINERS)
    if r.set(SLOT.format(slot), "1", nx=True, px=SLOT_TTL_MS):
        try:
            drainer_start(slot)
        except Exception:
            # No drainer started: free the slot rather than block it for its TTL.
            with contextlib.suppress(redis.RedisError):
                r.delete(SLOT.format(slot))
            raise
        return True
    return False


def drainer_start(slot: int) -> None:
    """Queue a drainer task for ``slot`` (by its name: the task module imports this one)."""
    current_app.send_task(DRAINER_TASK, (slot,), ignore_result=True)


def outcome(nonce: str) -> str | None:
    """ "placed", "no_node:<detail>", "failed", or None while pending. Raises
    QueueUnavailable when Redis cannot be reached."""
    try:
        value = client().get(OUTCOME.format(nonce))
    except redis.RedisError as exc:
        raise QueueUnavailable() from exc
    return value.decode() if value is not None else None


def drain(slot: int, place) -> int:
    """Place what the slot's last drainer left in flight, then pop and place rooms until
    the list is empty; ``place(room_id, region)`` returns an outcome string. Returns
    how many rooms were placed."""
    r = client()
    key, inflight = SLOT.format(slot), INFLIGHT.format(slot)
    take = r.register_script(TAKE)
    done = 0
    items = r.lrange(inflight, 0, -1)
    if items:
        logger.warning("Drainer %s: %s requests left in flight, placing them", slot, len(items))
    while True:
        if not items:
            items = take(keys=[PENDING, inflight], args=[settings.ALLOCATION_BATCH])
        if not items:
            r.delete(key)
            if r.llen(PENDING) and r.set(key, "1", nx=True, px=SLOT_TTL_MS):
                continue
            return done
        r.pexpire(key, SLOT_TTL_MS)
        placed: dict[str, str] = {}
        pipe = r.pipeline(transaction=False)
        for item in items:
            room_id, region, nonce = item.decode().split("|", 2)
            if room_id not in placed:  # the same room asked twice in one batch: once
                try:
                    placed[room_id] = place(room_id, region or None)
                except (*TRANSIENT, SoftTimeLimitExceeded):
                    with contextlib.suppress(redis.RedisError):
                        pipe.execute()  # what is done is answered; the rest stays in flight
                    raise
                except Exception:
                    # Not transient: asking again would fail again (and block the slot,
                    # or come back at every sweep). Answered "failed"; the join says so.
                    logger.exception("Drainer %s: placing room %s failed", slot, room_id)
                    placed[room_id] = "failed"
                    _forget(room_id)
                done += 1
            if nonce:  # none when beat's sweep asked: nobody waits for the outcome
                pipe.set(OUTCOME.format(nonce), placed[room_id], ex=OUTCOME_TTL_S)
            pipe.lrem(inflight, 1, item)
        pipe.execute()
        items = None


def _forget(room_id: str) -> None:
    """Drop a room's placement request that cannot succeed: beat must not retry it."""
    try:
        placement_request_answered(room_id=room_id)
    except Exception:
        logger.exception("Could not drop the placement request of room %s", room_id)


def sweep(*, older_than_seconds: float, limit: int = 5000) -> int:
    """Push again the placement requests older than ``older_than_seconds`` that nobody
    has answered (Redis lost them), and start drainers for them and for whatever a
    dead drainer left in flight. Returns how many requests were pushed again."""
    now = timezone.now()
    # Requests for rooms deleted meanwhile have their answer.
    PlacementRequest.objects.filter(room__deleted_at__isnull=False).delete()
    cutoff = now - timedelta(seconds=older_than_seconds)
    stale = list(
        PlacementRequest.objects.filter(requested_at__lt=cutoff)
        .order_by("requested_at")
        .values_list("room_id", "region")[:limit]
    )
    r = client()
    if stale:
        pipe = r.pipeline(transaction=False)
        for room_id, region in stale:
            pipe.rpush(PENDING, f"{room_id}|{region}|")
        pipe.execute()
        # Not again before another period, unless still unanswered by then.
        PlacementRequest.objects.filter(room_id__in=[pk for pk, _ in stale]).update(
            requested_at=now
        )
        logger.warning("Placement sweep: %s requests asked again", len(stale))
    slots = range(settings.ALLOCATION_DRAINERS)
    pipe = r.pipeline(transaction=False)
    for slot in slots:
        pipe.llen(INFLIGHT.format(slot))
    left = pipe.execute()
    if stale or r.llen(PENDING) or any(left):
        for slot in slots:
            wake(r, slot)
    return len(stale)
