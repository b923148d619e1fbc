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

On PostgreSQL, every figure but the peak is computed in the database, set-based (one
``CREATE TABLE ... AS SELECT`` whose distinct counts are hashed, not sorted); the peaks
come from a sweep over the same sessions streamed once as fixed-width binary rows
(``COPY ... (FORMAT BINARY)``) and sorted in memory with numpy, one day at a time; the
rows replace the range's, in one transaction. Other databases (the SQLite demo) use a
simple Python fallback with the same definitions, which the tests also use as the
oracle. Rows exist only where something happened, except the national row, written
for every day of a range (zeros included).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
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
ps AS ({pieces}),
per_agent AS MATERIALIZED (
    -- One row per day, ministry, unit and agent (guests together under a NULL key):
    -- distinct agents become plain counts, computed by hashing rather than sorting.
    SELECT day, ministry_id, unit, agent_key, SUM(t1 - t0) AS stay
    FROM ps
    GROUP BY day, ministry_id, unit, agent_key
),
participants AS (
    SELECT day, NULL::uuid AS ministry_id, ''::varchar AS unit,
           SUM(stay) AS stay, COUNT(agent_key) AS agents
    FROM (SELECT day, agent_key, SUM(stay) AS stay FROM per_agent GROUP BY day, agent_key) a
    GROUP BY day
    UNION ALL
    SELECT day, ministry_id, '', SUM(stay), COUNT(agent_key)
    FROM (
        SELECT day, ministry_id, agent_key, SUM(stay) AS stay
        FROM per_agent WHERE ministry_id IS NOT NULL
        GROUP BY day, ministry_id, agent_key
    ) a
    GROUP BY day, ministry_id
    UNION ALL
    SELECT day, ministry_id, unit, SUM(stay), COUNT(agent_key)
    FROM per_agent WHERE ministry_id IS NOT NULL AND unit <> ''
    GROUP BY day, ministry_id, unit
),
meetings_in_range AS MATERIALIZED (
    SELECT m.id, m.ministry_id, m.ended_at - m.started_at AS length,
           (m.started_at AT TIME ZONE %(tz)s)::date AS started_day,
           (m.ended_at AT TIME ZONE %(tz)s)::date AS ended_day
    FROM rooms_meetingsession m
    WHERE (m.started_at >= %(range_start)s AND m.started_at < %(range_end)s)
       OR (m.ended_at >= %(range_start)s AND m.ended_at < %(range_end)s)
),
meeting_scopes AS (
    SELECT started_day, ended_day, length, NULL::uuid AS ministry_id, ''::varchar AS unit
    FROM meetings_in_range
    UNION ALL
    SELECT started_day, ended_day, length, ministry_id, ''::varchar
    FROM meetings_in_range WHERE ministry_id IS NOT NULL
    UNION ALL
    -- The units whose agents attended each meeting (the meeting's days and length
    -- ride along in the key, so no second join is needed).
    SELECT pm.started_day, pm.ended_day, pm.length, p.ministry_id,
           p.organizational_unit COLLATE "C"
    FROM rooms_participantsession p
    JOIN meetings_in_range pm ON pm.id = p.meeting_id
    WHERE p.ministry_id IS NOT NULL AND p.organizational_unit <> ''
    GROUP BY p.meeting_id, pm.started_day, pm.ended_day, pm.length, p.ministry_id,
             p.organizational_unit COLLATE "C"
),
meeting_figures AS (
    -- Meetings by the day they started, and lengths by the day they ended, in one pass.
    SELECT started_day, ended_day, ministry_id, unit, GROUPING(started_day) AS by_end,
           COUNT(*) AS meetings, SUM(length) AS length
    FROM meeting_scopes
    GROUP BY GROUPING SETS ((started_day, ministry_id, unit), (ended_day, ministry_id, unit))
),
figures AS (
    SELECT started_day AS day, ministry_id, unit, meetings, NULL::interval AS stay,
           0 AS agents, NULL::numeric AS average_seconds
    FROM meeting_figures
    WHERE by_end = 0 AND started_day BETWEEN %(first_day)s AND %(last_day)s
    UNION ALL
    SELECT day, ministry_id, unit, 0, stay, agents, NULL FROM participants
    UNION ALL
    SELECT ended_day, ministry_id, unit, 0, NULL, 0,
           EXTRACT(EPOCH FROM length) / meetings
    FROM meeting_figures
    WHERE by_end = 1 AND ended_day BETWEEN %(first_day)s AND %(last_day)s
    UNION ALL
    SELECT day, NULL::uuid, ''::varchar, 0, NULL, 0, NULL FROM days
)
SELECT ministry_id, day, unit,
       SUM(meetings) AS meetings,
       COALESCE(ROUND(EXTRACT(EPOCH FROM SUM(stay)) / 60), 0) AS participant_minutes,
       SUM(agents) AS active_agents,
       COALESCE(ROUND(MAX(average_seconds)), 0) AS average_meeting_seconds
FROM figures
GROUP BY day, ministry_id, unit
"""

# Ended participant sessions clipped to each local day they overlap. Most start and end
# on the same local day of the range: that day is computed directly; the others
# (crossing midnight, or joined before the range) are matched with the days' bounds.
# An agent is known by their id, or by their pseudonym once pseudonymised (a uuid made
# from it, so that every key has the same narrow type).
PIECES_SQL = """
    SELECT (p.joined_at AT TIME ZONE %(tz)s)::date AS day, p.ministry_id,
           p.organizational_unit COLLATE "C" AS unit, p.joined_at AS t0, p.left_at AS t1,
           CASE
               WHEN p.agent_id IS NOT NULL THEN p.agent_id
               WHEN p.pseudonymised_at IS NOT NULL AND p.identity LIKE %(agent_prefix)s
                   THEN md5(p.identity)::uuid
           END AS agent_key
    FROM rooms_participantsession p
    WHERE p.left_at IS NOT NULL
      AND p.joined_at >= %(range_start)s
      AND p.joined_at < %(range_end)s
      AND (p.left_at AT TIME ZONE %(tz)s)::date = (p.joined_at AT TIME ZONE %(tz)s)::date
    UNION ALL
    SELECT g.day, p.ministry_id, p.organizational_unit COLLATE "C",
           GREATEST(p.joined_at, g.day::timestamp AT TIME ZONE %(tz)s),
           LEAST(p.left_at, (g.day + 1)::timestamp AT TIME ZONE %(tz)s),
           CASE
               WHEN p.agent_id IS NOT NULL THEN p.agent_id
               WHEN p.pseudonymised_at IS NOT NULL AND p.identity LIKE %(agent_prefix)s
                   THEN md5(p.identity)::uuid
           END
    FROM rooms_participantsession p
    -- Each day of the range from the join's to the one the leave ends (a leave at
    -- midnight ends the day before).
    CROSS JOIN LATERAL (
        SELECT d::date AS day
        FROM generate_series(
            GREATEST((p.joined_at AT TIME ZONE %(tz)s)::date, %(first_day)s::date),
            LEAST(((p.left_at - interval '1 microsecond') AT TIME ZONE %(tz)s)::date,
                  %(last_day)s::date),
            interval '1 day'
        ) AS d
    ) g
    WHERE p.left_at IS NOT NULL
      AND p.joined_at < %(range_end)s
      AND p.left_at >= %(range_start)s
      AND ((p.left_at AT TIME ZONE %(tz)s)::date <> (p.joined_at AT TIME ZONE %(tz)s)::date
           OR p.joined_at < %(range_start)s)
"""

ROLLUP_SQL = ROLLUP_SQL.replace("{pieces}", PIECES_SQL)

# Every (ministry, unit) with a row gets small integers: ``m`` for its ministry (from
# 1), ``u`` for the unit (from 1; 0 for the ministry's own row).
SCOPES_SQL = """
CREATE TEMPORARY TABLE usage_rollup_scopes AS
SELECT ministry_id, unit,
       (dense_rank() OVER (ORDER BY ministry_id))::int AS m,
       CASE WHEN unit = '' THEN 0 ELSE (row_number() OVER (ORDER BY ministry_id, unit))::int
       END AS u
FROM (SELECT DISTINCT ministry_id, unit FROM usage_rollup_rows
      WHERE ministry_id IS NOT NULL) scopes
"""

# The pieces again for the sweep, a few rows per day: per day and scope number, the join
# and leave instants as two binary arrays (``array_send``), read without a Python object
# per piece.
PIECES_ARRAYS_SQL = """
SELECT (ps.day - %(first_day)s::date)::int4 AS day, COALESCE(s.m, 0), COALESCE(s.u, 0),
       array_send(array_agg(ps.t0)), array_send(array_agg(ps.t1))
FROM ({pieces}) ps
LEFT JOIN usage_rollup_scopes s ON s.ministry_id = ps.ministry_id AND s.unit = ps.unit
GROUP BY 1, 2, 3
ORDER BY 1
""".replace("{pieces}", PIECES_SQL)

ROLLUP_WORK_MEM = "256MB"


def _rollup_postgresql(days: list[date]) -> int:
    bounds = [day_bounds(day) for day in days]
    params = {
        "days": days,
        "starts": [start for start, _ in bounds],
        "ends": [end for _, end in bounds],
        "range_start": bounds[0][0],
        "range_end": bounds[-1][1],
        "first_day": days[0],
        "last_day": days[-1],
        "agent_prefix": AGENT_PSEUDONYM_PREFIX + "%",
        "tz": settings.TIME_ZONE,
    }
    with connection.cursor() as cursor:
        # Aggregates by hashing stay in memory (this transaction only).
        cursor.execute("SELECT set_config('work_mem', %s, true)", [ROLLUP_WORK_MEM])
        cursor.execute("SELECT set_config('jit', 'off', true)")
        # 1. Every figure but the peak, set-based, into a temporary table (CREATE TABLE
        # AS may use parallel workers, INSERT ... SELECT may not).
        cursor.execute(f"CREATE TEMPORARY TABLE usage_rollup_rows AS {ROLLUP_SQL}", params)
        cursor.execute(SCOPES_SQL)
        # 2. The peaks: a sweep over the day's joins and leaves, in memory.
        peaks = _peaks_postgresql(cursor, params)
        cursor.execute(
            "CREATE TEMPORARY TABLE usage_rollup_peaks "
            "(day int4, m int4, u int4, peak int4, PRIMARY KEY (day, m, u))"
        )
        with cursor.cursor.copy("COPY usage_rollup_peaks (day, m, u, peak) FROM STDIN") as copy:
            for row in peaks:
                copy.write_row(row)
        cursor.execute(
            "INSERT INTO usage_dailyusage (ministry_id, day, organizational_unit, meetings, "
            "participant_minutes, active_agents, peak_concurrent, average_meeting_seconds, "
            "computed_at) "
            "SELECT r.ministry_id, r.day, r.unit, r.meetings, r.participant_minutes, "
            "r.active_agents, COALESCE(p.peak, 0), r.average_meeting_seconds, now() "
            "FROM usage_rollup_rows r "
            "LEFT JOIN usage_rollup_scopes s "
            "  ON s.ministry_id = r.ministry_id AND s.unit = r.unit "
            "LEFT JOIN usage_rollup_peaks p ON p.day = r.day - %(first_day)s::date "
            "  AND p.m = COALESCE(s.m, 0) AND p.u = COALESCE(s.u, 0)",
            params,
        )
        written = cursor.rowcount
        cursor.execute("DROP TABLE usage_rollup_rows, usage_rollup_scopes, usage_rollup_peaks")
        return written


# A one-dimensional array of int8 or timestamptz as ``array_send`` writes it: a header
# (dimensions, null flag, element type, length, lower bound), then each element's
# length (8) and value, big-endian.
_ARRAY_HEADER = np.dtype([("ndim", ">i4"), ("nulls", ">i4"), ("oid", ">u4")])
_ARRAY_ITEM = np.dtype([("length", ">i4"), ("value", ">i8")])


def _instants(data: bytes) -> np.ndarray:
    """The values of a binary int8/timestamptz array (microseconds since 2000-01-01 UTC
    for instants, PostgreSQL's own epoch)."""
    header = np.frombuffer(data, _ARRAY_HEADER, count=1)[0]
    if header["ndim"] != 1 or header["nulls"]:
        raise ValueError("expected a one-dimensional array without NULLs")
    count = int.from_bytes(data[12:16], "big")
    items = np.frombuffer(data, _ARRAY_ITEM, count=count, offset=20)
    if (items["length"] != 8).any():
        raise ValueError("expected 8-byte array elements")
    return items["value"].astype(np.int64)


def _peaks_postgresql(cursor, params: dict) -> list[tuple[int, int, int, int]]:
    """Peaks of the range, one day at a time, from ``PIECES_ARRAYS_SQL``."""
    results: list[tuple[int, int, int, int]] = []
    day, parts = None, []

    def flush():
        if parts:
            pieces = {
                "day": np.zeros(sum(len(p[2]) for p in parts), np.int32),
                "m": np.concatenate([np.full(len(p[2]), p[0], np.int32) for p in parts]),
                "u": np.concatenate([np.full(len(p[2]), p[1], np.int32) for p in parts]),
                "t0": np.concatenate([p[2] for p in parts]),
                "t1": np.concatenate([p[3] for p in parts]),
            }
            results.extend((day, m, u, peak) for _, m, u, peak in sweep_peaks(pieces, 1))

    # A server-side cursor: rows come a few at a time, so only about a day is held.
    with cursor.connection.connection.cursor(name="usage_rollup_pieces") as server:
        server.itersize = 64
        server.execute(PIECES_ARRAYS_SQL, params)
        for row_day, m, u, t0, t1 in server:
            if row_day != day:
                flush()
                day, parts = row_day, []
            parts.append((m, u, _instants(t0), _instants(t1)))
    flush()
    return results


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
