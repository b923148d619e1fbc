"""How usage figures are rounded and combined: one rule each, used by the roll-up's
rows and by every figure made from them (exports by period, monthly reports), so
that the same daily rows give the same totals wherever they are shown.
"""

from __future__ import annotations

from django.db.models import BigIntegerField, F, Max, Sum
from django.db.models.functions import Cast


def round_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` (not negative) rounded to the nearest integer, halves
    up, in exact integers: summing durations as float seconds can land just under a
    half (1105.684908 + 1219.474135 + 1304.840957 gives 3629.9999999999995)."""
    return (2 * numerator + denominator) // (2 * denominator)


def period_totals() -> dict:
    """Daily rows combined over a period, as aggregates (for ``annotate`` or
    ``aggregate``): meetings and participant-minutes add up; distinct agents and peaks
    do not (the busiest day's count is given); meeting seconds are the days' averages
    weighted by their meetings, for ``period_average_seconds``."""
    return {
        "x_meetings": Sum("meetings"),
        "x_minutes": Sum("participant_minutes"),
        "x_agents": Max("agents_in_meetings"),
        "x_peak": Max("peak_concurrent"),
        "x_seconds": Sum(Cast("average_meeting_seconds", BigIntegerField()) * F("meetings")),
    }


def period_average_seconds(meeting_seconds: int | None, meetings: int) -> int:
    """The mean meeting length over a period, from ``period_totals``' weighted seconds."""
    return round_half_up(int(meeting_seconds or 0), meetings) if meetings else 0
