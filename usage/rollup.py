"""The daily usage roll-up: meeting and participant sessions become DailyUsage rows.

Days are local days in Europe/Paris (``settings.TIME_ZONE``): a day runs from its
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
- ``active_agents``: distinct agents with an ended participant session overlapping
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

Rows are computed in the database (one ``INSERT ... SELECT`` with ``GROUP BY`` and
window functions on PostgreSQL) after deleting the range's rows, in one transaction;
other databases (the SQLite demo) use a simple Python fallback with the same
definitions. Rows exist only where something happened, except the national row,
written for every day of a range (zeros included).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Min, Q
from django.utils import timezone

from accounts.models import Ministry
from rooms.models import MeetingSession, ParticipantSession
from usage.models import DailyUsage, RollupState

logger = logging.getLogger(__name__)

# Pseudonymised participant sessions of agents carry this prefix (see retention).
AGENT_PSEUDONYM_PREFIX = "agent-"


def _zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The instants a local day starts and ends at (end excluded)."""
    zone = _zone()
    start = datetime.combine(day, time.min, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone)
    return start, end


def local_day(moment: datetime) -> date:
    """The local (Europe/Paris) day of an instant."""
    return timezone.localtime(moment, _zone()).date()


def _days(first_day: date, last_day: date) -> list[date]:
    return [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]


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
    days = _days(first_day, last_day)
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
    if connection.vendor == "postgresql":
        return _rollup_postgresql(days)
    rows = rollup_compute_python(days)
    DailyUsage.objects.bulk_create(rows)
    return len(rows)


ROLLUP_SQL = """
WITH days(day, day_start, day_end) AS (
    SELECT * FROM unnest(%(days)s::date[], %(starts)s::timestamptz[], %(ends)s::timestamptz[])
),
ps AS (
    -- Ended participant sessions clipped to each local day they overlap. Most start and
    -- end on the same local day of the range: that day is computed directly; the others
    -- (crossing midnight, or joined before the range) are matched with the days' bounds.
    SELECT (p.joined_at AT TIME ZONE %(tz)s)::date AS day, p.ministry_id,
           p.organizational_unit COLLATE "C" AS unit, p.joined_at AS t0, p.left_at AS t1,
           p.agent_id, p.pseudonymised_at, p.identity
    FROM rooms_participantsession p
    WHERE p.left_at IS NOT NULL
      AND p.joined_at >= %(range_start)s
      AND p.joined_at < %(range_end)s
      AND (p.left_at AT TIME ZONE %(tz)s)::date = (p.joined_at AT TIME ZONE %(tz)s)::date
    UNION ALL
    SELECT d.day, p.ministry_id, p.organizational_unit COLLATE "C",
           GREATEST(p.joined_at, d.day_start), LEAST(p.left_at, d.day_end),
           p.agent_id, p.pseudonymised_at, p.identity
    FROM rooms_participantsession p
    JOIN unnest(%(days)s::date[], %(starts)s::timestamptz[], %(ends)s::timestamptz[])
         AS d(day, day_start, day_end)
      ON p.joined_at < d.day_end
     AND (p.left_at > d.day_start OR p.joined_at >= d.day_start)
    WHERE p.left_at IS NOT NULL
      AND p.joined_at < %(range_end)s
      AND p.left_at >= %(range_start)s
      AND ((p.left_at AT TIME ZONE %(tz)s)::date <> (p.joined_at AT TIME ZONE %(tz)s)::date
           OR p.joined_at < %(range_start)s)
),
events AS (
    -- Each session joins (+1, carrying its duration and agent) and leaves (-1).
    SELECT ps.day, ps.ministry_id, ps.unit, e.at, e.delta, e.duration, e.agent_key
    FROM ps CROSS JOIN LATERAL (
        VALUES (ps.t0, 1, ps.t1 - ps.t0,
                CASE
                    WHEN ps.agent_id IS NOT NULL THEN ps.agent_id::text
                    WHEN ps.pseudonymised_at IS NOT NULL AND ps.identity LIKE %(agent_prefix)s
                        THEN ps.identity
                END COLLATE "C"),
               (ps.t1, -1, NULL, NULL)
    ) AS e(at, delta, duration, agent_key)
),
national_running AS (
    -- The sweep nationally, then per ministry, then per unit: each order refines the
    -- previous one (incremental sorts on the shared prefix).
    SELECT day, ministry_id, unit, at, delta, duration, agent_key,
           SUM(delta) OVER (
               PARTITION BY day ORDER BY at, delta
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
           ) AS national
    FROM events
),
ministry_running AS (
    SELECT day, ministry_id, unit, at, delta, duration, agent_key, national,
           SUM(delta) OVER (
               PARTITION BY day, ministry_id ORDER BY at, delta
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
           ) AS ministry
    FROM national_running
),
unit_running AS (
    SELECT day, ministry_id, unit, duration, agent_key, national, ministry,
           SUM(delta) OVER (
               PARTITION BY day, ministry_id, unit ORDER BY at, delta
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
           ) AS in_unit
    FROM ministry_running
),
scope_figures AS (
    SELECT day, ministry_id, unit, GROUPING(day, ministry_id, unit) AS level,
           EXTRACT(EPOCH FROM SUM(duration)) AS seconds,
           COUNT(DISTINCT agent_key) AS agents,
           MAX(national) AS national, MAX(ministry) AS ministry, MAX(in_unit) AS in_unit
    FROM unit_running
    GROUP BY ROLLUP (day, ministry_id, unit)
),
participants AS (
    SELECT day, NULL::uuid AS ministry_id, ''::varchar AS unit, seconds, agents,
           national AS peak
    FROM scope_figures WHERE level = 3
    UNION ALL
    SELECT day, ministry_id, '', seconds, agents, ministry
    FROM scope_figures WHERE level = 1 AND ministry_id IS NOT NULL
    UNION ALL
    SELECT day, ministry_id, unit, seconds, agents, in_unit
    FROM scope_figures WHERE level = 0 AND ministry_id IS NOT NULL AND unit <> ''
),
meetings_in_range AS MATERIALIZED (
    SELECT m.id, m.ministry_id, m.started_at, m.ended_at,
           (m.started_at AT TIME ZONE %(tz)s)::date AS started_day,
           (m.ended_at AT TIME ZONE %(tz)s)::date AS ended_day
    FROM rooms_meetingsession m
    WHERE (m.started_at >= %(range_start)s AND m.started_at < %(range_end)s)
       OR (m.ended_at >= %(range_start)s AND m.ended_at < %(range_end)s)
),
meeting_scopes AS (
    SELECT started_at, ended_at, started_day, ended_day,
           NULL::uuid AS ministry_id, ''::varchar AS unit
    FROM meetings_in_range
    UNION ALL
    SELECT started_at, ended_at, started_day, ended_day, ministry_id, ''::varchar
    FROM meetings_in_range WHERE ministry_id IS NOT NULL
    UNION ALL
    SELECT m.started_at, m.ended_at, m.started_day, m.ended_day,
           mu.ministry_id, mu.organizational_unit
    FROM (
        -- The units whose agents attended each meeting.
        SELECT p.meeting_id, p.ministry_id, p.organizational_unit
        FROM rooms_participantsession p
        JOIN rooms_meetingsession pm ON pm.id = p.meeting_id
        WHERE p.ministry_id IS NOT NULL AND p.organizational_unit <> ''
          AND ((pm.started_at >= %(range_start)s AND pm.started_at < %(range_end)s)
               OR (pm.ended_at >= %(range_start)s AND pm.ended_at < %(range_end)s))
        GROUP BY p.meeting_id, p.ministry_id, p.organizational_unit
    ) mu
    JOIN meetings_in_range m ON m.id = mu.meeting_id
),
started AS (
    SELECT d.day, ms.ministry_id, ms.unit, COUNT(*) AS meetings
    FROM meeting_scopes ms
    JOIN days d ON d.day = ms.started_day
    GROUP BY d.day, ms.ministry_id, ms.unit
),
ended AS (
    SELECT d.day, ms.ministry_id, ms.unit,
           AVG(EXTRACT(EPOCH FROM ms.ended_at - ms.started_at)) AS average_seconds
    FROM meeting_scopes ms
    JOIN days d ON d.day = ms.ended_day
    GROUP BY d.day, ms.ministry_id, ms.unit
),
figures AS (
    SELECT day, ministry_id, unit, meetings, 0 AS seconds, 0 AS agents, 0 AS peak,
           NULL::numeric AS average_seconds
    FROM started
    UNION ALL
    SELECT day, ministry_id, unit, 0, seconds, agents, peak, NULL FROM participants
    UNION ALL
    SELECT day, ministry_id, unit, 0, 0, 0, 0, average_seconds FROM ended
    UNION ALL
    SELECT day, NULL::uuid, ''::varchar, 0, 0, 0, 0, NULL FROM days
)
SELECT ministry_id, day, unit,
       SUM(meetings) AS meetings,
       ROUND(SUM(seconds) / 60) AS participant_minutes,
       SUM(agents) AS active_agents,
       GREATEST(MAX(peak), 0) AS peak_concurrent,
       COALESCE(ROUND(MAX(average_seconds)), 0) AS average_meeting_seconds
FROM figures
GROUP BY day, ministry_id, unit
"""


ROLLUP_WORK_MEM = "256MB"


def _rollup_postgresql(days: list[date]) -> int:
    bounds = [day_bounds(day) for day in days]
    params = {
        "days": days,
        "starts": [start for start, _ in bounds],
        "ends": [end for _, end in bounds],
        "range_start": bounds[0][0],
        "range_end": bounds[-1][1],
        "agent_prefix": AGENT_PSEUDONYM_PREFIX + "%",
        "tz": settings.TIME_ZONE,
    }
    with connection.cursor() as cursor:
        # The sweep's sorts and the per-agent aggregates stay in memory (this
        # transaction only).
        cursor.execute("SELECT set_config('work_mem', %s, true)", [ROLLUP_WORK_MEM])
        cursor.execute("SELECT set_config('jit', 'off', true)")
        # Computed into a temporary table first: PostgreSQL plans an INSERT ... SELECT
        # without parallel workers, CREATE TABLE ... AS with them.
        cursor.execute(f"CREATE TEMPORARY TABLE usage_rollup_rows AS {ROLLUP_SQL}", params)
        cursor.execute(
            "INSERT INTO usage_dailyusage (ministry_id, day, organizational_unit, meetings, "
            "participant_minutes, active_agents, peak_concurrent, average_meeting_seconds, "
            "computed_at) SELECT ministry_id, day, unit, meetings, participant_minutes, "
            "active_agents, peak_concurrent, average_meeting_seconds, now() "
            "FROM usage_rollup_rows"
        )
        written = cursor.rowcount
        cursor.execute("DROP TABLE usage_rollup_rows")
        return written


def _round_half_up(value: float) -> int:
    """Rounding as PostgreSQL's ROUND(numeric) does (halves away from zero)."""
    return math.floor(value + 0.5)


def rollup_compute_python(days: list[date]) -> list[DailyUsage]:
    """The same figures as the SQL, computed in Python (SQLite demo; test oracle)."""
    range_start, range_end = day_bounds(days[0])[0], day_bounds(days[-1])[1]
    wanted = set(days)
    meetings = defaultdict(set)
    lengths = defaultdict(list)
    seconds = defaultdict(float)
    agents = defaultdict(set)
    intervals = defaultdict(list)

    def scopes(ministry_id, unit):
        yield (None, "")
        if ministry_id is not None:
            yield (ministry_id, "")
            if unit:
                yield (ministry_id, unit)

    meeting_rows = MeetingSession.objects.filter(
        Q(started_at__gte=range_start, started_at__lt=range_end)
        | Q(ended_at__gte=range_start, ended_at__lt=range_end)
    ).prefetch_related("participants")
    for meeting in meeting_rows:
        keys = {(None, "")}
        if meeting.ministry_id is not None:
            keys.add((meeting.ministry_id, ""))
        for p in meeting.participants.all():
            if p.ministry_id is not None and p.organizational_unit:
                keys.add((p.ministry_id, p.organizational_unit))
        for key in keys:
            started = local_day(meeting.started_at)
            if started in wanted:
                meetings[(started, *key)].add(meeting.pk)
            if meeting.ended_at and local_day(meeting.ended_at) in wanted:
                length = (meeting.ended_at - meeting.started_at).total_seconds()
                lengths[(local_day(meeting.ended_at), *key)].append(length)

    sessions = ParticipantSession.objects.filter(
        left_at__isnull=False, joined_at__lt=range_end, left_at__gte=range_start
    )
    for p in sessions:
        if p.agent_id is not None:
            agent_key = str(p.agent_id)
        elif p.pseudonymised_at and p.identity.startswith(AGENT_PSEUDONYM_PREFIX):
            agent_key = p.identity
        else:
            agent_key = None
        for day in days:
            start, end = day_bounds(day)
            if not (p.joined_at < end and (p.left_at > start or p.joined_at >= start)):
                continue
            t0, t1 = max(p.joined_at, start), min(p.left_at, end)
            for key in scopes(p.ministry_id, p.organizational_unit):
                seconds[(day, *key)] += (t1 - t0).total_seconds()
                if agent_key:
                    agents[(day, *key)].add(agent_key)
                intervals[(day, *key)].append((t0, t1))

    keys = set(meetings) | set(lengths) | set(seconds) | {(day, None, "") for day in days}
    rows = []
    for key in sorted(keys, key=lambda k: (k[0], str(k[1] or ""), k[2])):
        day, ministry_id, unit = key
        peak = present = 0
        events = [(t0, 1) for t0, _ in intervals[key]] + [(t1, -1) for _, t1 in intervals[key]]
        for _, delta in sorted(events):
            present += delta
            peak = max(peak, present)
        length = lengths[key]
        rows.append(
            DailyUsage(
                ministry_id=ministry_id,
                organizational_unit=unit,
                day=day,
                meetings=len(meetings[key]),
                participant_minutes=_round_half_up(seconds[key] / 60),
                active_agents=len(agents[key]),
                peak_concurrent=peak,
                average_meeting_seconds=_round_half_up(sum(length) / len(length)) if length else 0,
            )
        )
    return rows


# -- Incremental ------------------------------------------------------------------------


def _touched_days(since: datetime | None) -> set[date]:
    """Local days whose figures may have changed with sessions updated after ``since``
    (all days with sessions when None): a participant session touches every day from
    its join to its leave and its meeting's start and end days; a meeting, its start
    and end days."""
    if connection.vendor == "postgresql":
        return _touched_days_postgresql(since)
    meetings = MeetingSession.objects.all()
    participants = ParticipantSession.objects.select_related("meeting")
    if since is not None:
        meetings = meetings.filter(updated_at__gt=since)
        participants = participants.filter(updated_at__gt=since)
    days: set[date] = set()
    for meeting in meetings.only("started_at", "ended_at"):
        days.add(local_day(meeting.started_at))
        if meeting.ended_at:
            days.add(local_day(meeting.ended_at))
    for p in participants:
        first, last = local_day(p.joined_at), local_day(p.left_at or p.joined_at)
        days.update(_days(first, last))
        days.add(local_day(p.meeting.started_at))
        if p.meeting.ended_at:
            days.add(local_day(p.meeting.ended_at))
    return days


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


def _touched_days_postgresql(since: datetime | None) -> set[date]:
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
    days = _touched_days(since)
    written = 0
    for first, last in _contiguous(days):
        written += rollup_days(first, last)
    # Never move the watermark backwards (an older, slower run finishing last).
    RollupState.objects.filter(name="usage").filter(
        Q(watermark__isnull=True) | Q(watermark__lt=now)
    ).update(watermark=now)
    logger.info("Usage roll-up: %s days, %s rows", len(days), written)
    return written
