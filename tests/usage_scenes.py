"""Usage scenes several test modules share: meetings and stays at Paris local times,
and the roll-up rows and sessions of October 2026 and of the last two weeks."""

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.utils import timezone

from rooms.models import MeetingSession, ParticipantSession
from tests.factories import DailyUsageFactory, MeetingSessionFactory, ParticipantSessionFactory

PARIS = ZoneInfo("Europe/Paris")
OCT = date(2026, 10, 1)


def at(day: date, hh: int, mm: int = 0, *, plus_days: int = 0) -> datetime:
    """``day`` + ``plus_days`` at hh:mm, Paris time."""
    return datetime.combine(day + timedelta(days=plus_days), time(hh, mm), tzinfo=PARIS)


def meeting(ministry, started_at, ended_at=None) -> MeetingSession:
    """A meeting of ``ministry`` from ``started_at`` (to ``ended_at``, or still running)."""
    return MeetingSessionFactory(ministry=ministry, started_at=started_at, ended_at=ended_at)


def stay(meeting_session, agent, joined_at, left_at=None, *, unit=None) -> ParticipantSession:
    """One participant session of ``agent`` (None: a guest) in ``meeting_session``."""
    fields = {} if unit is None or agent is None else {"organizational_unit": unit}
    return ParticipantSessionFactory(
        meeting=meeting_session, agent=agent, joined_at=joined_at, left_at=left_at, **fields
    )


def october_usage(world) -> None:
    """Roll-ups for October: A and B (totals and one unit each), and national rows."""
    for i in range(31):
        day = OCT + timedelta(days=i)
        for ministry, factor in ((world.a, 1), (world.b, 3)):
            DailyUsageFactory(
                ministry=ministry,
                day=day,
                meetings=factor * (i + 1),
                participant_minutes=factor * 10 * (i + 1),
                agents_in_meetings=factor * (i % 7 + 1),
                peak_concurrent=factor * 2,
                average_meeting_seconds=600,
            )
            DailyUsageFactory(
                ministry=ministry,
                day=day,
                organizational_unit=f"Bureau {ministry.code}",
                meetings=1,
                participant_minutes=factor * 5,
            )
        DailyUsageFactory(
            ministry=None,
            day=day,
            meetings=4 * (i + 1),
            participant_minutes=40 * (i + 1),
            agents_in_meetings=4 * (i % 7 + 1),
            peak_concurrent=8,
            average_meeting_seconds=600,
        )


def october_sessions(world, *, per_ministry=6) -> None:
    """Participant sessions of A's and B's agents in October (and one in November)."""
    october = MeetingSessionFactory(
        room_name="abc-defg-hij",
        ministry=world.a,
        livekit_sid="RM_oct",
        started_at=datetime(2026, 10, 2, 8, 0, tzinfo=UTC),
    )
    for ministry, agent in ((world.a, world.agent_a), (world.b, world.agent_b)):
        for i in range(per_ministry):
            joined = datetime(2026, 10, 2 + i, 8, 0, tzinfo=UTC)
            ParticipantSessionFactory(
                meeting=october,
                agent=agent,
                ministry=ministry,
                identity=agent.email,
                organizational_unit="Bureau 1" if i % 2 else "Bureau 2",
                participant_sid=f"PA_{ministry.code}_{i}",
                joined_at=joined,
                left_at=joined + timedelta(seconds=60 * (i + 1)),
                duration_seconds=60 * (i + 1),
            )
    ParticipantSessionFactory(
        meeting=october,
        agent=world.agent_a,
        ministry=world.a,
        identity="late",
        participant_sid="PA_nov",
        joined_at=datetime(2026, 11, 3, 8, 0, tzinfo=UTC),
        duration_seconds=999,
    )


def two_weeks_of_usage(world) -> date:
    """Two weeks of roll-up rows for A and B and the national rows, plus sessions of two
    of A's agents in a meeting now; returns this week's Monday."""
    today = timezone.localdate()
    monday = today - timedelta(days=today.weekday())
    for ministry, meetings in ((world.a, 3), (world.b, 5), (None, 8)):
        for day in (monday, monday - timedelta(days=7)):
            DailyUsageFactory(
                ministry=ministry, day=day, meetings=meetings, participant_minutes=meetings * 60
            )
    now_meeting = MeetingSessionFactory(
        room_name="r", ministry=world.a, livekit_sid="RM_dash", started_at=timezone.now()
    )
    for i, agent in enumerate((world.agent_a, world.admin_a)):
        ParticipantSessionFactory(
            meeting=now_meeting,
            agent=agent,
            ministry=world.a,
            identity=str(agent.pk),
            organizational_unit="",
            participant_sid=f"PA_{i}",
            joined_at=timezone.now(),
        )
    return monday
