"""Coalesced placement requests: a burst of joins costs a few Celery messages, not one
per join.

A join that finds its room unplaced pushes the room onto a Redis list and wakes a
drainer if fewer than ``ALLOCATION_DRAINERS`` are running (one Redis key per drainer
slot, with a TTL, so a dead drainer frees its slot by itself). Drainers are Celery
tasks on the ``allocation`` queue; each pops ``ALLOCATION_BATCH`` rooms at a time and
places them one by one, each in its own short transaction, then writes the outcome
under a per-room key that the waiting joins read. When the list is empty a drainer
frees its slot, then looks once more (a request may have arrived in between).

Nothing is lost for good if a drainer dies mid-batch: its joins time out with 202,
call again, and push their room again; placement is idempotent.

Without a broker (the demo's eager mode) the placement runs inline.
"""

from __future__ import annotations

import logging
import secrets
from functools import lru_cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

PENDING = "visio:allocation:pending"
SLOT = "visio:allocation:drainer:{}"
OUTCOME = "visio:allocation:outcome:{}"  # one per request (its nonce)
SLOT_TTL_MS = 15_000
OUTCOME_TTL_S = 60


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def client() -> redis.Redis:
    return _client(settings.CELERY_BROKER_URL)


def coalescing() -> bool:
    from controlplane.celery import app

    return bool(settings.CELERY_BROKER_URL) and not app.conf.task_always_eager


def request(room_id, region: str | None = None) -> dict | str:
    """Ask for a room to be placed. Returns the outcome (a dict) when it ran inline
    (eager mode), else the request's nonce, to read its outcome with ``outcome``."""
    from media_nodes.tasks import room_allocate_task

    if not coalescing():
        return room_allocate_task.apply(args=(str(room_id), region)).get()
    nonce = secrets.token_hex(8)
    r = client()
    r.rpush(PENDING, f"{room_id}|{region or ''}|{nonce}")
    wake(r)
    return nonce


def wake(r: redis.Redis, slot: int | None = None) -> bool:
    """Start a drainer on a slot (a random one by default) if that slot is free; the
    running drainers drain everything pushed meanwhile. One Redis call when busy."""
    from media_nodes.tasks import room_allocate_drain

    if slot is None:
        slot = secrets.randbelow(settings.ALLOCATION_DRAINERS)
    if r.set(SLOT.format(slot), "1", nx=True, px=SLOT_TTL_MS):
        room_allocate_drain.apply_async((slot,), ignore_result=True)
        return True
    return False


def outcome(nonce: str) -> str | None:
    """ "placed", "no_node:<detail>", or None while pending."""
    value = client().get(OUTCOME.format(nonce))
    return value.decode() if value is not None else None


def drain(slot: int, place) -> int:
    """Pop and place rooms until the list is empty; ``place(room_id, region)`` returns
    an outcome string. Returns how many rooms were placed."""
    r = client()
    key = SLOT.format(slot)
    done = 0
    while True:
        items = r.lpop(PENDING, settings.ALLOCATION_BATCH)
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
                placed[room_id] = place(room_id, region or None)
                done += 1
            pipe.set(OUTCOME.format(nonce), placed[room_id], ex=OUTCOME_TTL_S)
        pipe.execute()
