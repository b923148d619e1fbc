"""The roll-up's scan: the range's sessions read once from PostgreSQL, then summed into
figures per (day, ministry, unit) with the array work of ``usage.rollup_arrays``.

The database does what it is fast at: one scan of the sessions, grouped by (ministry,
unit) only, each column of a group sent as a binary array (``array_send``), and a few
small queries on meetings. Everything that depends on local days (splitting at
midnight, distinct agents, peaks, meetings per unit) is then done with numpy on
instants counted in microseconds. A unit's meetings also come from the stays found by
meeting: those of meetings crossing the range's edges, and those still open; a
meeting's span covers its joins (``rooms.webhook_events`` keeps it so), so the others all
joined within the range. The figures defined in ``usage.rollup`` are computed here
only; ``usage.rollup`` writes them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import date

import numpy as np
from django.db import connection

from accounts.models import Ministry
from usage.days import day_bounds
from usage.figures import round_half_up
from usage.retention import AGENT_PSEUDONYM_PREFIX
from usage.rollup_arrays import (
    binary_array,
    distinct_rows,
    pg_microseconds,
    split_by_day,
    sweep_peaks,
)

# Meetings of the range (started or ended in it), numbered ``n`` from 0, with their
# room's ministry number (0: none). ``boundary`` meetings may have sessions joined
# outside the range (they started before it, or have not ended within it); the
# others' sessions all joined within it, since a meeting's span covers its joins
# (``rooms.webhook_events`` keeps it so).
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


class RollupFigures:
    """The range's rows as they are summed: (day index, ministry id, unit) -> figures."""

    def __init__(self, days: list[date]):
        self.days = days
        self.rows: dict[tuple, list[int]] = {}

    def row(self, day: int, ministry_id, unit: str) -> list[int]:
        # meetings, seconds (µs), agents, peak, ended meetings, their length (µs)
        return self.rows.setdefault((day, ministry_id, unit), [0, 0, 0, 0, 0, 0])

    def finished(self) -> Iterator[tuple]:
        """The rows as stored: ``(ministry id, day, unit, meetings, participant minutes,
        agents in meetings, peak, average meeting seconds)``, durations rounded half up."""
        for (day, ministry_id, unit), row in self.rows.items():
            meetings, seconds, agents, peak, ended, length = row
            average = round_half_up(length, ended * 1_000_000) if ended else 0
            minutes = round_half_up(seconds, 60_000_000)
            yield (ministry_id, self.days[day], unit, meetings, minutes, agents, peak, average)


def rollup_scan(days: list[date]) -> RollupFigures:
    """Every figure of ``days`` (consecutive local days), read from the sessions; the
    national row is there for every day, zeros included. Runs inside the caller's
    transaction (its settings and temporary tables are dropped with it)."""
    bounds = [day_bounds(day) for day in days]
    count = len(days)
    range_start, range_end = bounds[0][0], bounds[-1][1]
    day_starts = np.array(
        [pg_microseconds(start) for start, _ in bounds] + [pg_microseconds(range_end)], np.int64
    )
    params = {
        "range_start": range_start,
        "range_end": range_end,
        "agent_prefix": AGENT_PSEUDONYM_PREFIX + "%",
    }
    figures = RollupFigures(days)
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
    return figures


def _meetings(cursor, day_starts: np.ndarray) -> dict[str, np.ndarray]:
    """The range's meetings by number: ministry number, start and end day (-1 when
    outside the range or not ended), length (µs)."""
    cursor.cursor.execute(MEETING_ARRAYS_SQL, binary=True)
    n, m_data, started_data, ended_data = cursor.cursor.fetchone()
    if n is None:
        empty = np.zeros(0, np.int64)
        return {"m": empty, "started_day": empty, "ended_day": empty, "length": empty}
    n = binary_array(n, "i4")
    m, started, ended = (np.zeros(len(n), np.int64) for _ in range(3))
    m[n] = binary_array(m_data, "i4")
    started[n] = binary_array(started_data, "i8")
    ended[n] = binary_array(ended_data, "i8")

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


def _meeting_figures(figures: RollupFigures, meetings: dict, ministries: list) -> None:
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
            t0, t1 = binary_array(t0, "i8"), binary_array(t1, "i8")
            stay, day, p0, p1 = split_by_day(t0, t1, day_starts)
            seconds = np.zeros(count, np.int64)
            np.add.at(seconds, day, p1 - p0)
            pieces = np.bincount(day, minlength=count)
            # Distinct agents of the group per day (guests have the nil uuid).
            agent = binary_array(agent, "uuid")[:, stay]
            known = (agent[0] != 0) | (agent[1] != 0)
            kept_day, agent = day[known], agent[:, known]
            rows = distinct_rows(kept_day, agent[0], agent[1])
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
                numbers = binary_array(meeting, "i4")
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
        figures.row(d, None, "")[2] = len(distinct_rows(agent[0], agent[1]))
        mine = agent_m > 0
        agent, agent_m = agent[:, mine], agent_m[mine]
        totals = np.bincount(agent_m[distinct_rows(agent_m, agent[0], agent[1])])
        for number in np.flatnonzero(totals).tolist():
            figures.row(d, ministries[number - 1], "")[2] = int(totals[number])


def _credit_meetings(
    figures: RollupFigures, key: tuple, numbers: np.ndarray, meetings: dict, *, repeats=False
) -> None:
    """A scope's meetings (by number; ``repeats``: some more than once) counted by the
    day they started, and their lengths by the day they ended."""
    if repeats:
        numbers = numbers.astype(np.int64)
        numbers = numbers[distinct_rows(numbers)]
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
