"""Meeting and participant sessions built directly with the ORM, at Paris local times."""

import itertools
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from rooms.models import MeetingSession, ParticipantSession

PARIS = ZoneInfo("Europe/Paris")
_sids = itertools.count()


def at(day: date, hh: int, mm: int = 0, *, plus_days: int = 0) -> datetime:
    """``day`` + ``plus_days`` at hh:mm, Paris time."""
    return datetime.combine(day + timedelta(days=plus_days), time(hh, mm), tzinfo=PARIS)


def meeting(ministry, started_at, ended_at=None) -> MeetingSession:
    n = next(_sids)
    return MeetingSession.objects.create(
        room_name=f"room-{n}",
        livekit_sid=f"RM_{n}",
        ministry=ministry,
        started_at=started_at,
        ended_at=ended_at,
    )


def stay(meeting_session, agent, joined_at, left_at=None, *, unit=None) -> ParticipantSession:
    """One participant session of ``agent`` (None: a guest) in ``meeting_session``."""
    n = next(_sids)
    return ParticipantSession.objects.create(
        meeting=meeting_session,
        agent=agent,
        ministry=agent.ministry if agent else None,
        organizational_unit=(agent.organizational_unit if unit is None else unit) if agent else "",
        identity=(agent.sub or str(agent.pk)) if agent else f"guest-{n}",
        participant_sid=f"PA_{n}",
        joined_at=joined_at,
        left_at=left_at,
        duration_seconds=int((left_at - joined_at).total_seconds()) if left_at else None,
    )
