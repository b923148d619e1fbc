"""The daily usage roll-up: meeting and participant sessions become DailyUsage rows.

Days are local days in Europe/Paris (``usage.days``): a day runs from its
local midnight to the next (23 or 25 hours on DST changes). For each day, one row
per ministry, per (ministry, organisational unit) and one national row
(``ministry`` NULL, unit ""), with:

- ``meetings``: meetings *started* that day. Ministry rows count the meetings whose
  room belongs to the ministry; unit rows count the meetings attended by the unit's
  agents (a participant session of the meeting with that ministry and unit); the
  national row counts every meeting.
- ``participant_minutes``: the overlap of each *ended* participant session with the
  day (a session crossing midnight is split between its days), summed in seconds
  and rounded to the nearest minute per row.
- ``agents_in_meetings``: distinct agents with an ended participant session overlapping
  the day; once a session is pseudonymised its agent is counted by its pseudonym.
  Guests (no agent) are not agents.
- ``peak_concurrent``: the most participant sessions present at the same instant
  that day, by a sweep over join (+1) and leave (-1) events ordered by time, leaves
  first on ties (a reconnection within the same second is not two people). The
  national peak is computed from all sessions, never summed from ministries'.
- ``average_meeting_seconds``: mean length of the meetings *ended* that day, in the
  same scopes as ``meetings``.

Participant rows follow the agent's ministry and unit as recorded on the session
(meetings cross ministries). Sessions still open (no ``left_at``) are left out of
participant figures until they end: re-running a day gives the same rows whatever
the time, and the day is rolled up again when the leave arrives (the session's
``updated_at`` moves). Today's row is therefore provisional.

The figures are computed in one place, ``usage.rollup_scan`` (one scan of the range's
sessions in PostgreSQL, then numpy: see ``usage.rollup_arrays``); this module decides
which days to roll up, keeps one roll-up at a time, and writes the rows, which replace
the range's in one transaction. The tests check the scan against a plain Python
reading of this definition (``tests/usage_rollup_definition.py``). Rows exist only
where something happened, except the national row, written for every day of a range
(zeros included).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min, Q
from django.utils import timezone

from accounts.models import Ministry
from usage.days import days_between
from usage.models import DailyUsage, RollupState
from usage.rollup_scan import RollupFigures, rollup_scan

logger = logging.getLogger(__name__)


def rollup_earliest_day(*, today: date | None = None) -> date:
    """The oldest day that can still be rebuilt: before it, retention may have deleted
    sessions of some ministry, and rebuilding would lose figures the rows still hold."""
    today = today or timezone.localdate()
    shortest = Ministry.objects.aggregate(days=Min("retention_days"))["days"]
    if shortest is None:
        shortest = settings.USAGE_DEFAULT_RETENTION_DAYS
    shortest = min(shortest, settings.USAGE_DEFAULT_RETENTION_DAYS)
    return today - timedelta(days=shortest + settings.USAGE_PURGE_AFTER_DAYS - 1)


def rollup_days(
    first_day: date,
    last_day: date,
    *,
    progress: Callable[[date, int], None] | None = None,
    force: bool = False,
) -> int:
    """Recompute every row of ``first_day``..``last_day`` (inclusive, local days);
    returns the number of rows written. Days older than ``rollup_earliest_day()``
    are skipped unless ``force`` (their sessions may have been purged)."""
    if last_day < first_day:
        return 0
    if not force:
        earliest = rollup_earliest_day()
        if first_day < earliest:
            logger.warning("Usage roll-up: days before %s are kept as they are", earliest)
            first_day = earliest
            if last_day < first_day:
                return 0
    total = 0
    # A day at a time when reporting progress; otherwise ranges of a month.
    step = 1 if progress else 31
    days = days_between(first_day, last_day)
    for index in range(0, len(days), step):
        chunk = days[index : index + step]
        written = _rollup_range(chunk)
        total += written
        if progress:
            progress(chunk[0], written)
    return total


@transaction.atomic
def _rollup_range(days: list[date]) -> int:
    # One roll-up at a time: the state row is the lock (the beat task and an
    # operator's command never interleave their deletes and inserts).
    RollupState.objects.get_or_create(name="usage")
    RollupState.objects.select_for_update().filter(name="usage").first()
    DailyUsage.objects.filter(day__gte=days[0], day__lte=days[-1]).delete()
    return _write(rollup_scan(days))


def _write(figures: RollupFigures) -> int:
    now = timezone.now()
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            "COPY usage_dailyusage (ministry_id, day, organizational_unit, meetings, "
            "participant_minutes, agents_in_meetings, peak_concurrent, average_meeting_seconds, "
            "computed_at) FROM STDIN"
        ) as copy,
    ):
        for row in figures.finished():
            copy.write_row((*row, now))
    return len(figures.rows)


# -- Incremental ------------------------------------------------------------------------

TOUCHED_DAYS_SQL = """
SELECT (m.started_at AT TIME ZONE %(tz)s)::date FROM rooms_meetingsession m
 WHERE %(since)s::timestamptz IS NULL OR m.updated_at > %(since)s
UNION
SELECT (m.ended_at AT TIME ZONE %(tz)s)::date FROM rooms_meetingsession m
 WHERE m.ended_at IS NOT NULL AND (%(since)s::timestamptz IS NULL OR m.updated_at > %(since)s)
UNION
SELECT generate_series(
           (p.joined_at AT TIME ZONE %(tz)s)::date,
           (COALESCE(p.left_at, p.joined_at) AT TIME ZONE %(tz)s)::date,
           interval '1 day'
       )::date
  FROM rooms_participantsession p
 WHERE %(since)s::timestamptz IS NULL OR p.updated_at > %(since)s
UNION
SELECT (m.started_at AT TIME ZONE %(tz)s)::date
  FROM rooms_participantsession p JOIN rooms_meetingsession m ON m.id = p.meeting_id
 WHERE %(since)s::timestamptz IS NULL OR p.updated_at > %(since)s
UNION
SELECT (m.ended_at AT TIME ZONE %(tz)s)::date
  FROM rooms_participantsession p JOIN rooms_meetingsession m ON m.id = p.meeting_id
 WHERE m.ended_at IS NOT NULL AND (%(since)s::timestamptz IS NULL OR p.updated_at > %(since)s)
"""


def rollup_touched_days(*, since: datetime | None) -> set[date]:
    """Local days whose figures may have changed with sessions updated after ``since``
    (all days with sessions when None): a participant session touches every day from
    its join to its leave and its meeting's start and end days; a meeting, its start
    and end days."""
    with connection.cursor() as cursor:
        cursor.execute(TOUCHED_DAYS_SQL, {"tz": settings.TIME_ZONE, "since": since})
        return {row[0] for row in cursor.fetchall()}


def _contiguous(days: set[date]) -> list[tuple[date, date]]:
    """Sorted days as ranges of consecutive days."""
    ranges: list[tuple[date, date]] = []
    for day in sorted(days):
        if ranges and day == ranges[-1][1] + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def rollup_incremental(*, now: datetime | None = None) -> int:
    """Roll up again exactly the days touched by sessions changed since the watermark
    (a late webhook lands in the day its session happened, by its join or start
    time), then move the watermark; returns the rows written.

    The new watermark is taken *before* reading, and the read starts
    ``USAGE_ROLLUP_OVERLAP_SECONDS`` before the old one: a webhook transaction that
    stamped its session before our read but committed after it is read next time.
    Re-rolling a day twice is harmless (each run recomputes the day completely).
    """
    now = now or timezone.now()
    state, _ = RollupState.objects.get_or_create(name="usage")
    since = None
    if state.watermark is not None:
        since = state.watermark - timedelta(seconds=settings.USAGE_ROLLUP_OVERLAP_SECONDS)
    days = rollup_touched_days(since=since)
    written = 0
    for first, last in _contiguous(days):
        written += rollup_days(first, last)
    # Never move the watermark backwards (an older, slower run finishing last).
    RollupState.objects.filter(name="usage").filter(
        Q(watermark__isnull=True) | Q(watermark__lt=now)
    ).update(watermark=now)
    logger.info("Usage roll-up: %s days, %s rows", len(days), written)
    return written
