"""The calendar every usage figure is cut by: local days of ``settings.TIME_ZONE``
(Europe/Paris), which last 23 or 25 hours on clock changes, and months.

One definition, shared by the roll-up, the exports, the reports and the rollout
trend, so that a "day" bounds the same instants wherever a figure is read.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone


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


def period_bounds(first_day: date, last_day: date) -> tuple[datetime, datetime]:
    """The instants ``first_day``..``last_day`` (inclusive local days) span, end
    excluded, in UTC."""
    return day_bounds(first_day)[0], day_bounds(last_day)[1]


def local_day(moment: datetime) -> date:
    """The local (Europe/Paris) day of an instant."""
    return timezone.localtime(moment, _zone()).date()


def days_between(first_day: date, last_day: date) -> list[date]:
    """``first_day``..``last_day``, both included."""
    return [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]


def month_start(value: date) -> date:
    """The first day of ``value``'s month."""
    return value.replace(day=1)


def month_after(month: date) -> date:
    """The first day of the month after ``month``'s."""
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)
