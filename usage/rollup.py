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

On PostgreSQL, the database reads the range's sessions once, grouped by (ministry,
unit) only, each group's joins, leaves, agents and meeting numbers sent as binary
arrays; numpy then cuts stays at local midnights, counts distinct agents, sweeps for
peaks and credits units with their meetings (working out a local day per row in SQL
costs more than the whole scan). A unit's meetings also come from the stays found by
meeting: those of meetings crossing the range's edges, and those still open; a
meeting's span covers its joins (``rooms.webhooks`` keeps it so), so the others all
joined within the range. The rows replace the range's, in one transaction. Other
databases (the SQLite demo) use a simple Python fallback with the same definitions,
which the tests also use as the oracle. Rows exist only where something happened,
except the national row, written for every day of a range (zeros included).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
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
    """The instants a local day starts and ends at (end excluded), in UTC: aware
    datetimes sharing a zone subtract as wall-clock times, which would make every day,
    even one of 23 or 25 hours, last 24 hours."""
    zone = _zone()
    start = datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone).astimezone(UTC)
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


# -- PostgreSQL ---------------------------------------------------------------------------
#
# The database does what it is fast at: one scan of the sessions, grouped by (ministry,
# unit) only, each column of a group as a binary array (``array_send``), and a few small
# queries on meetings. Everything that depends on local days (splitting at midnight,
# distinct agents, peaks, meetings per unit) is then done with numpy on instants counted
# in microseconds: computing a local day per row in SQL (``AT TIME ZONE``) costs more
# than the whole scan.

# Meetings of the range (started or ended in it), numbered ``n`` from 0, with their
# room's ministry number (0: none). ``boundary`` meetings may have sessions joined
# outside the range (they started before it, or have not ended within it); the
# others' sessions all joined within it, since a meeting's span covers its joins
# (``rooms.webhooks`` keeps it so).
MEETINGS_SQL = """
CREATE TEMPORARY TABLE usage_rollup_meetings AS
SELECT m.id, (row_number() OVER ())::int4 - 1 AS n, COALESCE(mm.m, 0) AS m,
       m.started_at, m.ended_at,
       (m.started_at < %(range_start)s OR m.ended_at IS NULL
        OR m.ended_at >= %(range_end)s) AS boundary
FROM rooms_meetingsession m
LEFT JOIN usage_rollup_ministries mm ON mm.id = m.ministry_id
WHERE (m.started_at >= %(range_start)s AND m.started_at < %(range_end)s)
   OR (m.ended_at >= %(range_start)s AND m.ended_at < %(range_end)s)
"""

MEETING_ARRAYS_SQL = """
SELECT array_send(array_agg(n)), array_send(array_agg(m)),
       array_send(array_agg(started_at)),
       array_send(array_agg(COALESCE(ended_at, 'infinity'::timestamptz)))
FROM usage_rollup_meetings
"""

# Ended participant sessions that overlap the range, per (ministry, unit): joins,
# leaves, the agent (their id, or a uuid made from their pseudonym once pseudonymised;
# the nil uuid for guests) and the meeting's number (-1: a meeting outside the range).
SESSIONS_SQL = """
SELECT p.ministry_id, p.organizational_unit,
       array_send(array_agg(p.joined_at)), array_send(array_agg(p.left_at)),
       array_send(array_agg(
           CASE
               WHEN p.agent_id IS NOT NULL THEN p.agent_id
               WHEN p.pseudonymised_at IS NOT NULL AND p.identity LIKE %(agent_prefix)s
                   THEN md5(p.identity)::uuid
               ELSE '00000000-0000-0000-0000-000000000000'::uuid
           END)),
       array_send(array_agg(COALESCE(rm.n, -1)))
FROM rooms_participantsession p
LEFT JOIN usage_rollup_meetings rm ON rm.id = p.meeting_id
WHERE p.left_at IS NOT NULL AND p.joined_at < %(range_end)s AND p.left_at >= %(range_start)s
GROUP BY p.ministry_id, p.organizational_unit
"""

# The other sessions that say which units attended a meeting of the range: those of
# boundary meetings (found by meeting) and those still open.
ATTENDANCE_SQL = """
SELECT rm.n, p.ministry_id, p.organizational_unit
FROM usage_rollup_meetings rm
JOIN rooms_participantsession p ON p.meeting_id = rm.id
WHERE rm.boundary AND p.ministry_id IS NOT NULL AND p.organizational_unit <> ''
UNION
SELECT rm.n, p.ministry_id, p.organizational_unit
FROM rooms_participantsession p
JOIN usage_rollup_meetings rm ON rm.id = p.meeting_id
WHERE p.left_at IS NULL AND p.ministry_id IS NOT NULL AND p.organizational_unit <> ''
"""

ROLLUP_WORK_MEM = "256MB"

_MICROSECOND = timedelta(microseconds=1)


def _round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` (not negative) rounded to the nearest integer, halves
    up, in exact integers: summing durations as float seconds can land just under a
    half (1105.684908 + 1219.474135 + 1304.840957 gives 3629.9999999999995)."""
    return (2 * numerator + denominator) // (2 * denominator)


# PostgreSQL counts instants in microseconds from 2000-01-01 UTC.
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _microseconds(moment: datetime) -> int:
    return (moment - _PG_EPOCH) // _MICROSECOND


def _binary_array(data: bytes, element: str) -> np.ndarray:
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


def _distinct_rows(*columns: np.ndarray) -> np.ndarray:
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


class _Figures:
    """The range's rows as they are summed: (day index, ministry id, unit) -> figures."""

    def __init__(self, days: list[date]):
        self.days = days
        self.rows: dict[tuple, list[int]] = {}

    def row(self, day: int, ministry_id, unit: str) -> list[int]:
        # meetings, seconds (µs), agents, peak, ended meetings, their length (µs)
        return self.rows.setdefault((day, ministry_id, unit), [0, 0, 0, 0, 0, 0])


def _rollup_postgresql(days: list[date]) -> int:
    bounds = [day_bounds(day) for day in days]
    count = len(days)
    range_start, range_end = bounds[0][0], bounds[-1][1]
    day_starts = np.array(
        [_microseconds(start) for start, _ in bounds] + [_microseconds(range_end)], np.int64
    )
    params = {
        "range_start": range_start,
        "range_end": range_end,
        "agent_prefix": AGENT_PSEUDONYM_PREFIX + "%",
    }
    figures = _Figures(days)
    ministries = list(Ministry.objects.order_by("pk").values_list("pk", flat=True))
    number_of = {pk: n for n, pk in enumerate(ministries, start=1)}
    with connection.cursor() as cursor:
        # Sessions are grouped by hashing, in memory (this transaction only).
        cursor.execute("SELECT set_config('work_mem', %s, true)", [ROLLUP_WORK_MEM])
        cursor.execute("SELECT set_config('jit', 'off', true)")
        cursor.execute(
            "CREATE TEMPORARY TABLE usage_rollup_ministries (id uuid PRIMARY KEY, m int4)"
        )
        with cursor.cursor.copy("COPY usage_rollup_ministries (id, m) FROM STDIN") as copy:
            for pk, n in number_of.items():
                copy.write_row((pk, n))
        cursor.execute(MEETINGS_SQL, params)
        cursor.execute("ANALYZE usage_rollup_meetings")
        meetings = _meetings(cursor, day_starts)
        _meeting_figures(figures, meetings, ministries)
        cursor.execute(ATTENDANCE_SQL)
        attended = defaultdict(list)
        for n, ministry_id, unit in cursor.fetchall():
            attended[(ministry_id, unit)].append(n)
        _sessions(cursor, params, figures, day_starts, number_of, ministries, attended, meetings)
        cursor.execute("DROP TABLE usage_rollup_meetings, usage_rollup_ministries")
    # Units seen only in those other sessions.
    for key, numbers in attended.items():
        _credit_meetings(figures, key, np.array(numbers, np.int64), meetings, repeats=True)
    for day in range(count):
        figures.row(day, None, "")  # the national row, every day
    return _write(figures, days)


def _meetings(cursor, day_starts: np.ndarray) -> dict[str, np.ndarray]:
    """The range's meetings by number: ministry number, start and end day (-1 when
    outside the range or not ended), length (µs)."""
    cursor.cursor.execute(MEETING_ARRAYS_SQL, binary=True)
    n, m_data, started_data, ended_data = cursor.cursor.fetchone()
    if n is None:
        empty = np.zeros(0, np.int64)
        return {"m": empty, "started_day": empty, "ended_day": empty, "length": empty}
    n = _binary_array(n, "i4")
    m, started, ended = (np.zeros(len(n), np.int64) for _ in range(3))
    m[n] = _binary_array(m_data, "i4")
    started[n] = _binary_array(started_data, "i8")
    ended[n] = _binary_array(ended_data, "i8")

    def day_of(instants):
        day = np.searchsorted(day_starts, instants, "right") - 1
        return np.where((day >= 0) & (day < len(day_starts) - 1), day, -1)

    has_ended = ended != np.iinfo(np.int64).max  # 'infinity'
    return {
        "m": m,
        "started_day": day_of(started),
        "ended_day": np.where(has_ended, day_of(ended), -1),
        "length": np.where(has_ended, ended - started, 0),
    }


def _meeting_figures(figures: _Figures, meetings: dict, ministries: list) -> None:
    """Meetings started and ended each day, nationally and by the room's ministry."""
    m = meetings["m"]
    _credit_meetings(figures, (None, ""), np.arange(len(m)), meetings)
    order = np.argsort(m, kind="stable")
    edges = np.searchsorted(m[order], np.arange(len(ministries) + 2))
    for number, ministry_id in enumerate(ministries, start=1):
        if edges[number + 1] > edges[number]:
            mine = order[edges[number] : edges[number + 1]]
            _credit_meetings(figures, (ministry_id, ""), mine, meetings)


def _sessions(cursor, params, figures, day_starts, number_of, ministries, attended, meetings):
    """Participant figures (seconds, distinct agents, peaks) and units' meetings from the
    sessions, read one (ministry, unit) group at a time. ``attended`` holds, per unit,
    the meetings known from other sessions (a unit's are used, and removed, with its
    group)."""
    units: dict[tuple, int] = {}
    count = len(day_starts) - 1
    # Per day, each group's pieces (for the sweep) and distinct agents.
    by_day: list[list] = [[] for _ in range(count)]
    # A server-side cursor: groups come a few at a time.
    with cursor.connection.connection.cursor(name="usage_rollup_sessions") as server:
        server.itersize = 8
        server.execute(SESSIONS_SQL, params, binary=True)
        for ministry_id, unit, t0, t1, agent, meeting in server:
            if ministry_id is not None and ministry_id not in number_of:
                ministries.append(ministry_id)  # created since the roll-up began
                number_of[ministry_id] = len(ministries)
            m = number_of.get(ministry_id, 0)
            u = units.setdefault((ministry_id, unit), len(units) + 1) if m and unit else 0
            scopes = [(None, "")]
            if m:
                scopes.append((ministry_id, ""))
            if u:
                scopes.append((ministry_id, unit))
            t0, t1 = _binary_array(t0, "i8"), _binary_array(t1, "i8")
            stay, day, p0, p1 = split_by_day(t0, t1, day_starts)
            seconds = np.zeros(count, np.int64)
            np.add.at(seconds, day, p1 - p0)
            pieces = np.bincount(day, minlength=count)
            # Distinct agents of the group per day (guests have the nil uuid).
            agent = _binary_array(agent, "uuid")[:, stay]
            known = (agent[0] != 0) | (agent[1] != 0)
            kept_day, agent = day[known], agent[:, known]
            rows = _distinct_rows(kept_day, agent[0], agent[1])
            kept_day, agent = kept_day[rows], agent[:, rows]
            agents = np.searchsorted(kept_day, np.arange(count + 1))  # sorted by day
            order = np.argsort(day, kind="stable")
            edges = np.searchsorted(day[order], np.arange(count + 1))
            for d in np.flatnonzero(pieces).tolist():
                for scope in scopes:
                    figures.row(d, *scope)[1] += int(seconds[d])
                if u:
                    figures.row(d, ministry_id, unit)[2] = int(agents[d + 1] - agents[d])
                part = order[edges[d] : edges[d + 1]]
                by_day[d].append((m, u, p0[part], p1[part], agent[:, agents[d] : agents[d + 1]]))
            if u:
                numbers = _binary_array(meeting, "i4")
                numbers = numbers[numbers >= 0]
                extra = np.array(attended.pop((ministry_id, unit), []), np.int64)
                numbers = np.concatenate((numbers, extra))
                _credit_meetings(figures, (ministry_id, unit), numbers, meetings, repeats=True)
    # Peaks and distinct agents of the nation and of each ministry, one day at a time.
    unit_keys = {number: key for key, number in units.items()}
    for d, parts in enumerate(by_day):
        if not parts:
            continue
        by_day[d] = None  # let the day's pieces go with it
        m = np.array([p[0] for p in parts], np.int32)
        sizes = [len(p[2]) for p in parts]
        pieces = {
            "day": np.zeros(sum(sizes), np.int32),
            "m": np.repeat(m, sizes),
            "u": np.repeat(np.array([p[1] for p in parts], np.int32), sizes),
            "t0": np.concatenate([p[2] for p in parts]),
            "t1": np.concatenate([p[3] for p in parts]),
        }
        for _, number, u, peak in sweep_peaks(pieces, 1):
            key = unit_keys[u] if u else (ministries[number - 1] if number else None, "")
            figures.row(d, *key)[3] = peak
        agent = np.concatenate([p[4] for p in parts], axis=1)
        agent_m = np.repeat(m, [p[4].shape[1] for p in parts])
        figures.row(d, None, "")[2] = len(_distinct_rows(agent[0], agent[1]))
        mine = agent_m > 0
        agent, agent_m = agent[:, mine], agent_m[mine]
        totals = np.bincount(agent_m[_distinct_rows(agent_m, agent[0], agent[1])])
        for number in np.flatnonzero(totals).tolist():
            figures.row(d, ministries[number - 1], "")[2] = int(totals[number])


def _credit_meetings(
    figures: _Figures, key: tuple, numbers: np.ndarray, meetings: dict, *, repeats=False
) -> None:
    """A scope's meetings (by number; ``repeats``: some more than once) counted by the
    day they started, and their lengths by the day they ended."""
    if repeats:
        numbers = numbers.astype(np.int64)
        numbers = numbers[_distinct_rows(numbers)]
    count = len(figures.days)
    started, ended = meetings["started_day"][numbers], meetings["ended_day"][numbers]
    started_counts = np.bincount(started[started >= 0], minlength=count)
    ended_counts = np.bincount(ended[ended >= 0], minlength=count)
    ended_lengths = np.zeros(count, np.int64)
    np.add.at(ended_lengths, ended[ended >= 0], meetings["length"][numbers][ended >= 0])
    for day in np.flatnonzero(started_counts | ended_counts).tolist():
        row = figures.row(day, *key)
        row[0] += int(started_counts[day])
        row[4] += int(ended_counts[day])
        row[5] += int(ended_lengths[day])


def _write(figures: _Figures, days: list[date]) -> int:
    now = timezone.now()
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            "COPY usage_dailyusage (ministry_id, day, organizational_unit, meetings, "
            "participant_minutes, active_agents, peak_concurrent, average_meeting_seconds, "
            "computed_at) FROM STDIN"
        ) as copy,
    ):
        for (day, ministry_id, unit), row in figures.rows.items():
            meetings, seconds, agents, peak, ended, length = row
            copy.write_row(
                (
                    ministry_id,
                    days[day],
                    unit,
                    meetings,
                    _round_half_up(seconds, 60_000_000),
                    agents,
                    peak,
                    _round_half_up(length, ended * 1_000_000) if ended else 0,
                    now,
                )
            )
    return len(figures.rows)


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


def rollup_compute_python(days: list[date]) -> list[DailyUsage]:
    """The same figures as the SQL, computed in Python (SQLite demo; test oracle)."""
    range_start, range_end = day_bounds(days[0])[0], day_bounds(days[-1])[1]
    wanted = set(days)
    meetings = defaultdict(set)
    lengths = defaultdict(list)
    seconds = defaultdict(int)  # microseconds
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
                length = (meeting.ended_at - meeting.started_at) // _MICROSECOND
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
                seconds[(day, *key)] += (t1 - t0) // _MICROSECOND
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
                participant_minutes=_round_half_up(seconds[key], 60_000_000),
                active_agents=len(agents[key]),
                peak_concurrent=peak,
                average_meeting_seconds=(
                    _round_half_up(sum(length), len(length) * 1_000_000) if length else 0
                ),
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
