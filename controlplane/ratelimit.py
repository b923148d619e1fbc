"""Rate limits on the doors that cost the most or matter the most: login starts and
refused login callbacks (per client address), API and directory token issue (per
caller), SCIM (per directory token, or client address without one).

A fixed-window counter in Django's cache: one ``add`` (or ``incr``) per request. With
``CACHE_URL`` (Redis) the count is shared by every web replica; without it (the
demo) each process counts alone. At a window's edge a client may get up to twice
its rate over a short span: acceptable for these limits, and one round trip cheap.
When the cache cannot be reached the request is let through (logged): a limit must
never take login down.

Each edge answers in its own dialect: a French page for login, DRF's 429 body for
the API, a SCIM error body for SCIM; all with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from dataclasses import dataclass

from django.core.cache import cache

from controlplane.metrics import RATE_LIMITED

logger = logging.getLogger(__name__)

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Rate:
    """At most ``count`` requests per ``seconds``; ``count`` 0 turns the limit off."""

    count: int
    seconds: int

    @classmethod
    def parse(cls, value: str, *, name: str = "rate") -> Rate:
        """``"30/m"``, ``"1200/5m"``, ``"20/h"``, ``"0/m"`` (off); ValueError otherwise."""
        match = _RATE.match(value or "")
        if not match:
            raise ValueError(f"{name}: {value!r} is not a rate like 30/m, 1200/5m or 20/h")
        count, multiple, unit = int(match[1]), int(match[2] or 1), match[3]
        if multiple < 1:
            raise ValueError(f"{name}: {value!r} has an empty period")
        return cls(count=count, seconds=multiple * _UNIT_SECONDS[unit])

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}s"


class RateLimited(Exception):
    """Refused: the caller may try again in ``retry_after`` seconds."""

    def __init__(self, limit: str, retry_after: int):
        self.limit = limit
        self.retry_after = retry_after
        super().__init__(f"rate limit {limit}: retry in {retry_after}s")


def _window(limit: str, key: str, rate: Rate, now: float) -> tuple[str, int]:
    """The cache key counting ``key`` in the current window, and the window's number.
    ``key`` is hashed: tokens and addresses never reach the cache in clear."""
    window = int(now // rate.seconds)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"ratelimit:{limit}:{digest}:{window}", window


def _refuse(limit: str, rate: Rate, window: int, now: float, *, log: bool) -> RateLimited:
    RATE_LIMITED.labels(limit=limit).inc()
    retry_after = max(1, math.ceil((window + 1) * rate.seconds - now))
    if log:  # once per window and key, not once per refusal
        logger.warning("Rate limit %s reached (%s): retry in %ss", limit, rate, retry_after)
    return RateLimited(limit, retry_after)


def rate_limit_check(limit: str, *, key: str, rate: Rate, now: float | None = None) -> None:
    """RateLimited if ``key`` already used up ``limit`` in this window (counts nothing:
    for limits charged only by failures, see ``rate_limit_hit``)."""
    if rate.count <= 0:
        return
    now = time.time() if now is None else now
    cache_key, window = _window(limit, key, rate, now)
    try:
        count = cache.get(cache_key) or 0
    except Exception as exc:  # noqa: BLE001 - the cache is down: let the request through
        logger.warning("Rate limit %s not applied: cache error %s", limit, type(exc).__name__)
        return
    if count >= rate.count:
        raise _refuse(limit, rate, window, now, log=False)


def rate_limit_hit(limit: str, *, key: str, rate: Rate, now: float | None = None) -> None:
    """Count one request of ``key`` against ``limit``; RateLimited once over ``rate``."""
    if rate.count <= 0:
        return
    now = time.time() if now is None else now
    cache_key, window = _window(limit, key, rate, now)
    try:
        if cache.add(cache_key, 1, timeout=rate.seconds + 1):
            count = 1
        else:
            try:
                count = cache.incr(cache_key)
            except ValueError:  # expired between add and incr
                cache.add(cache_key, 1, timeout=rate.seconds + 1)
                count = 1
    except Exception as exc:  # noqa: BLE001 - the cache is down: let the request through
        logger.warning("Rate limit %s not applied: cache error %s", limit, type(exc).__name__)
        return
    if count > rate.count:
        raise _refuse(limit, rate, window, now, log=count == rate.count + 1)
