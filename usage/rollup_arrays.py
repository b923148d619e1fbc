"""The roll-up's array work, in numpy: decoding PostgreSQL's binary arrays, cutting
stays at local midnights, picking distinct rows and sweeping for peaks.

Kept apart from the SQL scan (``usage.rollup_scan``) because these functions touch
no database: they work on instants counted in microseconds, as PostgreSQL sends them,
and each is checked alone against a brute force (``tests/usage/test_usage_sweep.py``).
Working out a local day per row in SQL (``AT TIME ZONE``) costs more than the whole
scan, so everything that depends on local days is done here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

# PostgreSQL counts instants in microseconds from 2000-01-01 UTC.
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def pg_microseconds(moment: datetime) -> int:
    """An instant as PostgreSQL counts it: microseconds since 2000-01-01 UTC."""
    return (moment - _PG_EPOCH) // MICROSECOND


def binary_array(data: bytes, element: str) -> np.ndarray:
    """The elements of a one-dimensional array without NULLs as ``array_send`` writes
    it: a 20-byte header (dimensions, null flag, element type, length, lower bound),
    then each element's byte length and big-endian value. ``element`` is ``"i4"``,
    ``"i8"`` (also instants) or ``"uuid"`` (two unsigned 64-bit halves)."""
    ndim, nulls = int.from_bytes(data[0:4], "big"), int.from_bytes(data[4:8], "big")
    if ndim != 1 or nulls:
        raise ValueError("expected a one-dimensional array without NULLs")
    count = int.from_bytes(data[12:16], "big")
    if element == "uuid":
        fields = [("length", ">i4"), ("hi", ">u8"), ("lo", ">u8")]
    else:
        fields = [("length", ">i4"), ("value", f">{element}")]
    items = np.frombuffer(data, np.dtype(fields), count=count, offset=20)
    size = 16 if element == "uuid" else int(element[1])
    if (items["length"] != size).any():
        raise ValueError(f"expected {size}-byte array elements")
    if element == "uuid":
        return np.stack((items["hi"].astype(np.uint64), items["lo"].astype(np.uint64)))
    return items["value"].astype(np.int64)


def split_by_day(
    t0: np.ndarray, t1: np.ndarray, day_starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stays ``[t0, t1]`` cut into one piece per local day of the range they overlap:
    ``(stay index, day index, piece start, piece end)``. A stay belongs to the days from
    its join's to its leave's, a leave at midnight ending the day before (a stay of no
    length at midnight belongs to the day it is in). ``day_starts`` holds the instants
    the range's days start at, and the range's end."""
    days = len(day_starts) - 1
    first = np.searchsorted(day_starts, t0, "right") - 1
    last = np.maximum(first, np.searchsorted(day_starts, t1 - 1, "right") - 1)
    first, last = np.maximum(first, 0), np.minimum(last, days - 1)
    count = np.maximum(last - first + 1, 0)
    stay = np.repeat(np.arange(len(t0)), count)
    offset = np.arange(len(stay)) - np.repeat(np.cumsum(count) - count, count)
    day = first[stay] + offset
    return (
        stay,
        day,
        np.maximum(t0[stay], day_starts[day]),
        np.minimum(t1[stay], day_starts[day + 1]),
    )


def distinct_rows(*columns: np.ndarray) -> np.ndarray:
    """Indexes of one row per distinct tuple of ``columns``, sorted by those tuples."""
    if not len(columns[0]):
        return np.zeros(0, np.int64)
    order = np.lexsort(columns[::-1])
    change = np.zeros(len(order), bool)
    change[0] = True
    for column in columns:
        ordered = column[order]
        change[1:] |= ordered[1:] != ordered[:-1]
    return order[change]


def sweep_peaks(pieces: dict[str, np.ndarray], day_count: int) -> list[tuple[int, int, int, int]]:
    """For each day (index from the range's first) and scope, the most pieces present at
    the same instant: ``(day, m, u, peak)`` with ``m`` = ``u`` = 0 for the nation and
    ``u`` = 0 for a ministry.

    Each day, every piece is a join (+1) and a leave (-1) in each of its scopes; events
    are sorted by scope, instant, leaves before joins (one integer key: scope in the
    high bits, the instant doubled plus 1 for a join in the low ones), and the running
    sum's maximum within each scope is its peak. Every piece ends within its day, so
    each scope's events sum to zero and one running sum over all of them restarts at
    zero at every scope's first event."""
    results: list[tuple[int, int, int, int]] = []
    if not len(pieces["day"]):
        return results
    order = np.argsort(pieces["day"], kind="stable")
    day_sorted = pieces["day"][order]
    bounds = np.searchsorted(day_sorted, np.arange(day_count + 1))
    max_m = int(pieces["m"].max())
    # Each unit's ministry (unit numbers are unique across ministries).
    ministry_of_unit = np.zeros(int(pieces["u"].max()) + 1, np.int64)
    ministry_of_unit[pieces["u"]] = pieces["m"]
    for day in range(day_count):
        index = order[bounds[day] : bounds[day + 1]]
        if not len(index):
            continue
        m, u = pieces["m"][index], pieces["u"][index]
        t0, t1 = pieces["t0"][index], pieces["t1"][index]
        # Scope numbers: 0 the nation, 1..max_m the ministries, then the units.
        scopes = [np.zeros(len(index), np.int64)]
        starts, ends = [t0], [t1]
        has_m = m > 0
        scopes.append(m[has_m].astype(np.int64))
        starts.append(t0[has_m])
        ends.append(t1[has_m])
        has_u = u > 0
        scopes.append(max_m + u[has_u].astype(np.int64))
        starts.append(t0[has_u])
        ends.append(t1[has_u])
        scope = np.concatenate(scopes)
        origin = min(int(t0.min()), int(t1.min()))
        join = (np.concatenate(starts) - origin) * 2 + 1
        leave = (np.concatenate(ends) - origin) * 2
        span = int(max(join.max(), leave.max())).bit_length()
        keys = np.concatenate((scope, scope))
        if int(keys.max()).bit_length() + span < 63:
            packed = np.sort((keys << span) | np.concatenate((join, leave)))
            sorted_scope = packed >> span
            delta = (packed & 1) * 2 - 1
        else:  # too many scopes to pack: sort on two keys
            events = np.concatenate((join, leave))
            by = np.lexsort((events, keys))
            sorted_scope = keys[by]
            delta = (events[by] & 1) * 2 - 1
        running = np.cumsum(delta)
        first = np.flatnonzero(np.r_[True, sorted_scope[1:] != sorted_scope[:-1]])
        peak = np.maximum(np.maximum.reduceat(running, first), 0)
        for number, value in zip(sorted_scope[first].tolist(), peak.tolist(), strict=True):
            if number == 0:
                results.append((day, 0, 0, value))
            elif number <= max_m:
                results.append((day, number, 0, value))
            else:
                unit = number - max_m
                results.append((day, int(ministry_of_unit[unit]), unit, value))
    return results
