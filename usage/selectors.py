"""Reads of usage and rollout figures, already scoped to the caller.

A ministry's onboarding checklist is read here too: it reads accounts, seats
(licensing) and meetings (rooms), and usage is the lowest app above all three.

Scope: operators and national auditors read every ministry and the national
figures; ministry admins and auditors read their ministries only (never the
national rows, which would reveal the others' totals); anyone else reads nothing.

Rollout definitions:

- agents with a seat: the ministry's active (not deactivated) agents; each uses a
  seat of the pool (``accounts.selectors.agents_with_seat_count``).
- agents logged in: agents with a seat who logged in within 30 days, as the
  console's progress counts them (``accounts.selectors.ministry_rollout_progress``).
- trend: for each of the last 9 weekly points (today, 7 days ago, … 56 days ago),
  the distinct agents in meetings (a participant session) in the 30 days before it (sessions
  are the only history kept; a pseudonymised session counts by its pseudonym); the
  least-squares slope of those 9 points is the growth in agents per day.
- forecast: ``projected_date`` = today + (target − active) / slope. Status:
  ``on_track`` if the target is reached or the projected date is on or before the
  goal date; ``at_risk`` if it falls within ``ROLLOUT_AT_RISK_DAYS`` after it;
  ``late`` beyond that, when the trend is flat or falling, or when the goal date has
  passed unreached. No goal (or no date): no status.
- national: the sums over ministries (target: ministries with a goal; goal date:
  the latest of theirs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.access import access_for
from accounts.models import Ministry
from accounts.selectors import RECENT_LOGIN_DAYS, agents_with_seat_count, ministry_rollout_progress
from licensing.models import LicencePool
from licensing.selectors import savings_current
from rooms.models import MeetingSession, ParticipantSession
from usage.days import period_bounds
from usage.models import DailyUsage, MonthlyReport
from usage.retention import AGENT_PSEUDONYM_PREFIX

ROLLOUT_STATUS_CHOICES = [("on_track", "on_track"), ("at_risk", "at_risk"), ("late", "late")]
TREND_WEEKS = 8
ROLLOUT_AT_RISK_DAYS = 30


def daily_usage_list(*, user) -> QuerySet[DailyUsage]:
    """Daily rows the caller may read: all (national rows included) for national
    roles, their ministries' rows for admins and auditors, none for anyone else."""
    rows = DailyUsage.objects.select_related("ministry").order_by(
        "day", "ministry__code", "organizational_unit"
    )
    readable = access_for(user).readable_ministries
    if readable is None:
        return rows
    return rows.filter(ministry_id__in=readable)


def rollout_ministries(*, user) -> QuerySet[Ministry]:
    """Ministries whose rollout the caller reads (not the agent's own ministry)."""
    readable = access_for(user).readable_ministries
    ministries = Ministry.objects.prefetch_related("milestones").order_by("name")
    return ministries if readable is None else ministries.filter(pk__in=readable)


@dataclass(frozen=True)
class Forecast:
    """Where the trend leads: agents gained per week, the date the target would be
    reached, and the status against the goal date."""

    trend_per_week: float
    projected_date: date | None
    status: str | None


def _slope(points: list[int]) -> float:
    """Least-squares slope of weekly points (oldest first), in agents per day."""
    n = len(points)
    if n < 2:
        return 0.0
    xs = [7 * i for i in range(n)]
    mean_x, mean_y = sum(xs) / n, sum(points) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, points, strict=True)) / spread


def rollout_forecast(
    *, active: int, target: int | None, target_date: date | None, weekly: list[int], today: date
) -> Forecast:
    """The forecast of a goal from the weekly points (see the module's definitions)."""
    slope = _slope(weekly)
    trend = round(slope * 7, 2)
    if not target:
        return Forecast(trend, None, None)
    if active >= target:
        return Forecast(trend, today, "on_track")
    projected = today + timedelta(days=math.ceil((target - active) / slope)) if slope > 0 else None
    if target_date is None:
        return Forecast(trend, projected, None)
    if today > target_date or projected is None:
        return Forecast(trend, projected, "late")
    if projected <= target_date:
        return Forecast(trend, projected, "on_track")
    if projected <= target_date + timedelta(days=ROLLOUT_AT_RISK_DAYS):
        return Forecast(trend, projected, "at_risk")
    return Forecast(trend, projected, "late")


def weekly_agents_in_meetings(*, ministry_ids, today: date) -> dict:
    """{ministry id: [9 weekly points, oldest first]}: distinct agents with a session
    in the 30 days before each point (one query per point)."""
    series = {pk: [0] * (TREND_WEEKS + 1) for pk in ministry_ids}
    for index in range(TREND_WEEKS + 1):
        point = today - timedelta(days=7 * (TREND_WEEKS - index))
        # The same 30 days as the goal's logins, so the two figures read side by side.
        start, end = period_bounds(point - timedelta(days=RECENT_LOGIN_DAYS - 1), point)
        counts = (
            ParticipantSession.objects.filter(
                ministry_id__in=ministry_ids, joined_at__gte=start, joined_at__lt=end
            )
            .values("ministry_id")
            .annotate(
                agents=Count("agent", distinct=True),
                pseudonyms=Count(
                    "identity",
                    distinct=True,
                    filter=Q(
                        agent__isnull=True,
                        pseudonymised_at__isnull=False,
                        identity__startswith=AGENT_PSEUDONYM_PREFIX,
                    ),
                ),
            )
        )
        for row in counts:
            series[row["ministry_id"]][index] = row["agents"] + row["pseudonyms"]
    return series


def _entry(*, ministry, provisioned, progress, weekly, savings, today) -> dict:
    forecast = rollout_forecast(
        active=progress["agents_logged_in"],
        target=progress["target"],
        target_date=progress["target_date"],
        weekly=weekly,
        today=today,
    )
    return {
        "ministry": ministry.code if ministry else None,
        "name": ministry.name if ministry else None,
        "agents_with_seat": provisioned,
        "agents_logged_in": progress["agents_logged_in"],
        "target_agents": progress["target"],
        "target_date": progress["target_date"],
        "progress_percent": progress["percent"],
        "milestones": progress["milestones"],
        "weekly_agents_in_meetings": weekly,
        "trend_per_week": forecast.trend_per_week,
        "projected_date": forecast.projected_date,
        "status": forecast.status,
        "seats": savings.seats,
        "yearly_savings_eur": savings.yearly_savings_eur.quantize(Decimal("0.01")),
    }


def rollout_overview(*, user) -> list[dict]:
    """One entry per ministry the caller reads, then the national entry (``ministry``
    None) for national roles."""
    today = timezone.localdate()
    ministries = list(rollout_ministries(user=user).annotate(provisioned=agents_with_seat_count()))
    series = weekly_agents_in_meetings(ministry_ids=[m.pk for m in ministries], today=today)
    entries = []
    for ministry in ministries:
        entries.append(
            _entry(
                ministry=ministry,
                provisioned=ministry.provisioned,
                progress=ministry_rollout_progress(ministry=ministry),
                weekly=series[ministry.pk],
                savings=savings_current(user=user, ministry_id=ministry.pk),
                today=today,
            )
        )
    if access_for(user).reads_all:
        goals = [e for e in entries if e["target_agents"]]
        target = sum(e["target_agents"] for e in goals) or None
        active = sum(e["agents_logged_in"] for e in entries)
        dates = [e["target_date"] for e in goals if e["target_date"]]
        national = {
            "agents_logged_in": active,
            "target": target,
            "target_date": max(dates) if dates else None,
            "percent": min(100, round(100 * active / target)) if target else None,
            "milestones": [],
        }
        weekly = [sum(points) for points in zip(*series.values(), strict=True)] or [0] * (
            TREND_WEEKS + 1
        )
        entries.append(
            _entry(
                ministry=None,
                provisioned=sum(e["agents_with_seat"] for e in entries),
                progress=national,
                weekly=weekly,
                savings=savings_current(user=user),
                today=today,
            )
        )
    return entries


def export_ministry_list(*, user) -> QuerySet[Ministry]:
    """Ministries whose usage the caller may export: all of them for operators and
    national auditors, their own for admins and auditors, none for anyone else."""
    access = access_for(user)
    if not access.is_staff_role:
        return Ministry.objects.none()
    readable = access.readable_ministries
    if readable is None:
        return Ministry.objects.all()
    return Ministry.objects.filter(pk__in=readable)


def monthly_report_list(*, user) -> QuerySet[MonthlyReport]:
    """Monthly reports the caller may read (national ones only for those who read all),
    without their content."""
    access = access_for(user)
    reports = MonthlyReport.objects.select_related("ministry").defer("content")
    if not access.is_staff_role:
        return reports.none()
    readable = access.readable_ministries
    if readable is None:
        return reports
    return reports.filter(ministry_id__in=readable)


def ministry_checklist(*, ministry: Ministry) -> list[tuple[str, bool]]:
    """The onboarding steps a ministry's admins follow, each done or not (the caller
    has already checked that the viewer reads this ministry)."""
    has_agents = ministry.agents.filter(grants__isnull=True).exists()
    return [
        (_("Email domains set"), ministry.domains.exists()),
        (_("SIRETs set"), ministry.sirets.exists()),
        (
            _("Admins named"),
            ministry.grants.filter(role="ministry_admin").exists()
            or ministry.pending_grants.filter(role="ministry_admin").exists(),
        ),
        (_("Seats allocated"), LicencePool.objects.filter(ministry=ministry).exists()),
        (_("First agents imported"), has_agents),
        # A meeting counts once a participant of it has left (a real meeting, not a
        # room created and never used).
        (
            _("First meeting held"),
            MeetingSession.objects.filter(
                ministry=ministry, participants__left_at__isnull=False
            ).exists(),
        ),
    ]
