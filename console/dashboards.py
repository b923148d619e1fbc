"""Dashboards for auditors, admins and operators: adoption against the goal line with
its milestones, meetings and participant-minutes over time, seats used against the
pool, and savings. National for national readers, or per ministry.

Figures come from the daily usage roll-up and the participant sessions; each chart
is drawn by ``console/static/console/charts.js`` with its figures in a table beside.
"""

from __future__ import annotations

from datetime import date, timedelta

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Sum
from django.db.models.functions import TruncWeek
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.access import access_for
from accounts.models import Ministry
from accounts.selectors import ministry_rollout_progress
from licensing.selectors import savings_current
from rooms.models import ParticipantSession
from usage.models import DailyUsage
from usage.selectors import rollout_overview

WEEKS = 26
STATUS_LABELS = {
    "on_track": gettext_lazy("On track"),
    "at_risk": gettext_lazy("At risk"),
    "late": gettext_lazy("Late"),
}


def _weeks(today: date) -> list[date]:
    monday = today - timedelta(days=today.weekday())
    return [monday - timedelta(weeks=i) for i in range(WEEKS - 1, -1, -1)]


def _series(rows, weeks, field) -> list[int]:
    by_week = {row["week"]: row[field] or 0 for row in rows}
    return [int(by_week.get(week, 0)) for week in weeks]


def dashboard_data(*, ministry: Ministry | None, today: date | None = None) -> dict:
    """Weekly series of the last 26 weeks and today's figures (ministry None: national)."""
    today = today or timezone.localdate()
    weeks = _weeks(today)
    start = weeks[0]
    usage = DailyUsage.objects.filter(organizational_unit="", day__gte=start, ministry=ministry)
    usage = (
        usage.annotate(week=TruncWeek("day"))
        .values("week")
        .annotate(meetings=Sum("meetings"), minutes=Sum("participant_minutes"))
    )
    usage_rows = [{**row, "week": row["week"]} for row in usage]
    sessions = ParticipantSession.objects.filter(joined_at__date__gte=start)
    if ministry is not None:
        sessions = sessions.filter(ministry=ministry)
    adoption_rows = (
        sessions.annotate(week=TruncWeek("joined_at"))
        .values("week")
        .annotate(people=Count("identity", distinct=True))
    )
    adoption_rows = [{**row, "week": row["week"].date()} for row in adoption_rows]
    labels = [week.strftime("%d/%m/%y") for week in weeks]
    adoption = _series(adoption_rows, weeks, "people")
    goal_series = []
    milestones_series = [None] * len(weeks)
    goal = None
    if ministry is not None:
        goal = ministry_rollout_progress(ministry=ministry)
        if goal["target"]:
            goal_series = [goal["target"]] * len(weeks)
        for m in goal["milestones"]:
            for i, week in enumerate(weeks):
                if week <= m["due_on"] < week + timedelta(days=7):
                    milestones_series[i] = m["target_agents"]
    else:
        targets = Ministry.objects.exclude(rollout_target_agents=None).aggregate(
            total=Sum("rollout_target_agents")
        )["total"]
        if targets:
            goal_series = [targets] * len(weeks)
    adoption_chart = {
        "labels": labels,
        "series": [{"name": _("People in meetings (week)"), "values": adoption, "style": "line"}],
    }
    if goal_series:
        adoption_chart["series"].append({"name": _("Goal"), "values": goal_series, "style": "goal"})
    if any(v is not None for v in milestones_series):
        adoption_chart["series"].append(
            {"name": _("Milestones"), "values": milestones_series, "style": "milestones"}
        )
    activity_chart = {
        "labels": labels,
        "series": [
            {"name": _("Meetings"), "values": _series(usage_rows, weeks, "meetings")},
            {"name": _("Participant-minutes"), "values": _series(usage_rows, weeks, "minutes")},
        ],
    }
    return {
        "weeks": weeks,
        "adoption": adoption_chart,
        "activity": activity_chart,
        "meetings": {"labels": labels, "series": activity_chart["series"][:1]},
        "minutes": {"labels": labels, "series": activity_chart["series"][1:]},
        "goal": goal,
    }


def _rows(chart: dict) -> list[list]:
    return [
        [label, *[s["values"][i] for s in chart["series"]]]
        for i, label in enumerate(chart["labels"])
    ]


@login_required
def dashboard(request, code: str | None = None):
    access = access_for(request.user)
    if code is None:
        if access.reads_all:
            ministry = None
        else:
            readable = Ministry.objects.filter(pk__in=access.readable_ministries or [])
            first = readable.order_by("name").first()
            if first is None:
                raise PermissionDenied
            return redirect("console:dashboard-ministry", code=first.code)
    else:
        ministry = get_object_or_404(Ministry, code=code)
        if not access.can_read(ministry.pk):
            raise PermissionDenied
    data = dashboard_data(ministry=ministry)
    savings = savings_current(user=request.user, ministry_id=ministry.pk if ministry else None)
    seats_chart = {
        "labels": [_("Today")],
        "series": [
            {"name": _("Agents with a seat"), "values": [savings.agents_with_seat]},
            {"name": _("Seats"), "values": [savings.seats]},
        ],
    }
    wanted = ministry.code if ministry else None
    forecast = next(
        (e for e in rollout_overview(user=request.user) if e["ministry"] == wanted), None
    )
    readable = Ministry.objects.all()
    if not access.reads_all:
        readable = readable.filter(pk__in=access.readable_ministries or [])
    return render(
        request,
        "console/dashboard.html",
        {
            "ministry": ministry,
            "ministries": readable.order_by("name"),
            "adoption": data["adoption"],
            "adoption_rows": _rows(data["adoption"]),
            "activity": data["activity"],
            "activity_rows": _rows(data["activity"]),
            "meetings": data["meetings"],
            "minutes": data["minutes"],
            "seats": seats_chart,
            "savings": savings,
            "goal": data["goal"],
            "national": ministry is None,
            "forecast": forecast,
            "status_label": STATUS_LABELS.get(forecast and forecast["status"]),
        },
    )
