"""The usage roll-up's definition (``usage.rollup``'s docstring) read plainly in Python:
the oracle the PostgreSQL scan and "touched days" SQL are checked against.

Not production code and not a test module: slow (every session, every day, in Python)
but written to be obviously right, and on purpose independent of the production
helpers (its own local days, its own rounding), so that a mistake there shows up as
a disagreement instead of being shared by both sides.
"""

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from math import floor
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Q

from rooms.models import MeetingSession, ParticipantSession
from usage.models import DailyUsage
from usage.retention import AGENT_PSEUDONYM_PREFIX

# The figures of a DailyUsage row, in the order the tests compare them.
FIELDS = (
    "meetings",
    "participant_minutes",
    "agents_in_meetings",
    "peak_concurrent",
    "average_meeting_seconds",
)

MICROSECOND = timedelta(microseconds=1)


def zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """A local day's first instant and the next day's, in UTC (23 or 25 hours apart on
    a clock change)."""
    start = datetime.combine(day, time.min, tzinfo=zone())
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=zone())
    return start.astimezone(UTC), end.astimezone(UTC)


def local_day(moment: datetime) -> date:
    """The local day an instant falls in."""
    return moment.astimezone(zone()).date()


def rounded(numerator: int, denominator: int) -> int:
    """The nearest integer to a non-negative fraction, halves up."""
    return floor(Fraction(numerator, denominator) + Fraction(1, 2))


def stored_figures() -> dict:
    """The DailyUsage rows as {(day, ministry id, unit): figures in FIELDS order}."""
    return {
        (r.day, r.ministry_id, r.organizational_unit): tuple(getattr(r, f) for f in FIELDS)
        for r in DailyUsage.objects.all()
    }


def rollup_definition(days: list[date]) -> dict:
    """The rows the roll-up of ``days`` (consecutive local days) must write, as
    {(day, ministry id, unit): figures in FIELDS order}."""
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
                length = (meeting.ended_at - meeting.started_at) // MICROSECOND
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
                seconds[(day, *key)] += (t1 - t0) // MICROSECOND
                if agent_key:
                    agents[(day, *key)].add(agent_key)
                intervals[(day, *key)].append((t0, t1))

    keys = set(meetings) | set(lengths) | set(seconds) | {(day, None, "") for day in days}
    rows = {}
    for key in keys:
        peak = present = 0
        events = [(t0, 1) for t0, _ in intervals[key]] + [(t1, -1) for _, t1 in intervals[key]]
        for _, delta in sorted(events):
            present += delta
            peak = max(peak, present)
        length = lengths[key]
        rows[key] = (
            len(meetings[key]),
            rounded(seconds[key], 60_000_000),
            len(agents[key]),
            peak,
            rounded(sum(length), len(length) * 1_000_000) if length else 0,
        )
    return rows


def touched_days_definition(since: datetime | None) -> set[date]:
    """Local days whose figures may have changed with sessions updated after ``since``
    (every session when None): a meeting touches its start and end days; a participant
    session every day from its join to its leave (its join's alone while open), and its
    meeting's start and end days."""
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
        day, last = local_day(p.joined_at), local_day(p.left_at or p.joined_at)
        while day <= last:
            days.add(day)
            day += timedelta(days=1)
        days.add(local_day(p.meeting.started_at))
        if p.meeting.ended_at:
            days.add(local_day(p.meeting.ended_at))
    return days
