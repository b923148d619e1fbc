"""Monthly usage reports: each ministry's and the national one, from the daily roll-ups,
stored once with the SHA-256 of their bytes so that a copy can be checked later."""

from __future__ import annotations

import hashlib
import json
from datetime import date, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Agent, Ministry
from audit.actor import Actor
from audit.services import audit_record
from licensing.models import LicencePool
from usage.days import month_after, month_start
from usage.figures import period_average_seconds, period_totals
from usage.models import DailyUsage, MonthlyReport

REPORT_FORMAT_VERSION = 2  # 2: figures named for what they count (agents_in_meetings...)


def previous_month(today: date | None = None) -> date:
    """The first day of the month before ``today`` (the service's local date)."""
    today = today or timezone.localdate()
    return month_start(month_start(today) - timedelta(days=1))


def _figures(meetings: int, minutes: int, active: int, peak: int, seconds: int) -> dict:
    return {
        "meetings": meetings,
        "participant_minutes": minutes,
        "agents_in_meetings": active,
        "peak_concurrent": peak,
        "average_meeting_seconds": seconds,
    }


def monthly_report_content(*, ministry: Ministry | None, month: date) -> bytes:
    """The report's JSON bytes: figures per day, per unit and for the month, from the
    daily roll-ups; agents and seats as they stand when the report is made."""
    end = month_after(month)
    rows = DailyUsage.objects.filter(ministry=ministry, day__gte=month, day__lt=end)
    days = [
        {"day": day.isoformat(), **_figures(m, pm, a, p, s)}
        for day, m, pm, a, p, s in rows.filter(organizational_unit="")
        .order_by("day")
        .values_list(
            "day",
            "meetings",
            "participant_minutes",
            "agents_in_meetings",
            "peak_concurrent",
            "average_meeting_seconds",
        )
    ]
    month_totals = rows.filter(organizational_unit="").aggregate(**period_totals())
    meetings = month_totals["x_meetings"] or 0
    totals = {
        "meetings": meetings,
        "participant_minutes": month_totals["x_minutes"] or 0,
        # Distinct agents do not add up across days: the busiest day's count.
        "agents_in_meetings_max_day": month_totals["x_agents"] or 0,
        "peak_concurrent": month_totals["x_peak"] or 0,
        "average_meeting_seconds": period_average_seconds(month_totals["x_seconds"], meetings),
        "days_with_figures": len(days),
    }
    units = [
        {
            "organizational_unit": u["organizational_unit"],
            "meetings": u["m"] or 0,
            "participant_minutes": u["pm"] or 0,
        }
        for u in rows.exclude(organizational_unit="")
        .values("organizational_unit")
        .annotate(m=Sum("meetings"), pm=Sum("participant_minutes"))
        .order_by("organizational_unit")
    ]
    agents = (
        Agent.objects.filter(ministry=ministry)
        if ministry
        else Agent.objects.exclude(ministry=None)
    )
    pools = LicencePool.objects.filter(starts_on__lte=end - timedelta(days=1), ends_on__gte=month)
    if ministry is not None:
        pools = pools.filter(ministry=ministry)
    payload = {
        "format": REPORT_FORMAT_VERSION,
        "scope": "ministry" if ministry else "national",
        "ministry": {"code": ministry.code, "name": ministry.name} if ministry else None,
        "month": f"{month:%Y-%m}",
        "generated_at": timezone.now().isoformat(timespec="seconds"),
        "totals": {k: int(v) for k, v in totals.items()},
        "days": days,
        "units": [{**u, "meetings": int(u["meetings"])} for u in units],
        "agents": {
            # Every account the ministry has, deactivated ones included; then those
            # with a seat (active accounts), as the console names them.
            "accounts": agents.count(),
            "with_seat": agents.filter(is_active=True).count(),
        },
        "seats": int(pools.aggregate(s=Sum("seats"))["s"] or 0),
    }
    return json.dumps(payload, ensure_ascii=False, indent=2, default=int).encode("utf-8") + b"\n"


def report_filename(*, ministry: Ministry | None, month: date) -> str:
    return f"usage-report-{ministry.code if ministry else 'national'}-{month:%Y-%m}.json"


def monthly_report_generate(
    *, actor: Actor, ministry: Ministry | None, month: date, force: bool = False
) -> MonthlyReport | None:
    """Make and store the report of ``ministry`` (None: national) for ``month``.

    Idempotent: a report already stored is kept (None is returned) unless ``force``,
    which replaces it. Two workers racing for the same report: the unique constraint
    lets one write it, the other returns None.
    """
    month = month_start(month)
    with transaction.atomic():
        existing = (
            MonthlyReport.objects.select_for_update().filter(ministry=ministry, month=month).first()
        )
        if existing is not None and not force:
            return None
        content = monthly_report_content(ministry=ministry, month=month)
        digest = hashlib.sha256(content).hexdigest()
        filename = report_filename(ministry=ministry, month=month)
        if existing is not None:
            existing.content, existing.sha256, existing.filename = content, digest, filename
            existing.save(update_fields=["content", "sha256", "filename", "updated_at"])
            report = existing
        else:
            try:
                with transaction.atomic():
                    report = MonthlyReport.objects.create(
                        ministry=ministry,
                        month=month,
                        content=content,
                        content_type="application/json",
                        filename=filename,
                        sha256=digest,
                    )
            except IntegrityError:
                return None
        audit_record(
            actor=actor,
            action="usage.report_generate",
            target=report,
            ministry_id=ministry.pk if ministry else None,
            data={
                "month": f"{month:%Y-%m}",
                "sha256": digest,
                "bytes": len(content),
                "replaced": existing is not None,
            },
        )
    return report


def monthly_reports_generate(
    *, actor: Actor, month: date, force: bool = False
) -> list[MonthlyReport]:
    """The national report and every ministry's for ``month``; returns those made now."""
    made = []
    for ministry in [None, *Ministry.objects.order_by("code")]:
        report = monthly_report_generate(actor=actor, ministry=ministry, month=month, force=force)
        if report is not None:
            made.append(report)
    return made
