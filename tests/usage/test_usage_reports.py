"""Monthly usage reports: made once per ministry and month (national too), stored with
their SHA-256, listed and downloaded in the console by those who may read them."""

import hashlib
import json
from datetime import date
from io import StringIO

import pytest
from celery.schedules import crontab
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from audit.actor import Actor
from audit.models import AuditEvent
from tests.usage_scenes import october_usage
from usage.models import MonthlyReport
from usage.reports import monthly_report_generate, monthly_reports_generate, previous_month
from usage.tasks import monthly_reports

pytestmark = pytest.mark.django_db

OCT = date(2026, 10, 1)


def browser(agent):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(agent)
    return client


def test_reports_are_made_once_per_ministry_and_month_national_too(world):
    """One report per ministry plus the national one; a second run makes none."""
    october_usage(world)
    made = monthly_reports_generate(actor=Actor.system("tests"), month=OCT)
    assert sorted(r.ministry.code if r.ministry else "national" for r in made) == [
        "alpha",
        "bravo",
        "national",
    ]
    assert monthly_reports_generate(actor=Actor.system("tests"), month=OCT) == []
    assert MonthlyReport.objects.count() == 3
    events = AuditEvent.objects.filter(action="usage.report_generate")
    assert events.count() == 3
    report = MonthlyReport.objects.get(ministry=world.a)
    assert report.sha256 == hashlib.sha256(bytes(report.content)).hexdigest()
    assert report.filename == "usage-report-alpha-2026-10.json"


def test_report_content_adds_up_the_month(world):
    """Totals are the sums of the month's daily roll-ups; units and seats are there."""
    october_usage(world)
    report = monthly_report_generate(actor=Actor.system("tests"), ministry=world.a, month=OCT)
    content = json.loads(bytes(report.content))
    assert content["month"] == "2026-10" and content["ministry"]["code"] == "alpha"
    assert len(content["days"]) == 31
    assert content["totals"]["meetings"] == sum(range(1, 32))
    assert content["totals"]["participant_minutes"] == 10 * sum(range(1, 32))
    assert content["totals"]["agents_in_meetings_max_day"] == 7
    assert content["units"] == [
        {"organizational_unit": "Bureau alpha", "meetings": 31, "participant_minutes": 155}
    ]
    assert content["seats"] == 1000 and content["agents"]["accounts"] >= 2
    national = monthly_report_generate(actor=Actor.system("tests"), ministry=None, month=OCT)
    assert json.loads(bytes(national.content))["scope"] == "national"


def test_force_replaces_a_report(world):
    """``force`` makes the report again and records that it replaced one."""
    monthly_report_generate(actor=Actor.system("tests"), ministry=world.a, month=OCT)
    october_usage(world)
    report = monthly_report_generate(
        actor=Actor.system("tests"), ministry=world.a, month=OCT, force=True
    )
    assert json.loads(bytes(report.content))["totals"]["meetings"] == sum(range(1, 32))
    assert MonthlyReport.objects.filter(ministry=world.a).count() == 1
    assert (
        AuditEvent.objects.filter(action="usage.report_generate")
        .order_by("sequence")
        .last()
        .data["replaced"]
    )


def test_beat_task_and_command(world):
    """Beat runs the task every night at 02:00 (Paris) for the month before: the 1st
    makes the reports, a later night only what a missed 1st left out; the command
    makes a given month and is idempotent unless forced."""
    entry = settings.CELERY_BEAT_SCHEDULE["usage-monthly-reports"]
    assert entry["task"] == "usage.tasks.monthly_reports"
    assert entry["schedule"] == crontab(minute=0, hour=2)
    assert settings.CELERY_TIMEZONE == "Europe/Paris"
    assert settings.CELERY_TASK_ROUTES["usage.tasks.*"] == {"queue": "reports"}
    assert monthly_reports.delay().get() == 3
    assert MonthlyReport.objects.filter(month=previous_month()).count() == 3
    made = set(MonthlyReport.objects.values_list("pk", "sha256"))
    assert monthly_reports.delay().get() == 0  # the next night: nothing new, nothing redone
    assert set(MonthlyReport.objects.values_list("pk", "sha256")) == made
    out = StringIO()
    call_command("usage_reports", "--month", "2025-09", stdout=out)
    assert "3 report(s) made" in out.getvalue()
    call_command("usage_reports", "--month", "2025-09", stdout=out)
    assert "already exists" in out.getvalue()
    call_command("usage_reports", "--month", "2025-09", "--force", stdout=out)
    assert out.getvalue().count("3 report(s) made") == 2
    assert MonthlyReport.objects.filter(month=date(2025, 9, 1)).count() == 3


def test_previous_month():
    """The month before, across a year's end."""
    assert previous_month(date(2027, 1, 1)) == date(2026, 12, 1)
    assert previous_month(date(2026, 11, 30)) == date(2026, 10, 1)


def test_console_lists_only_readable_reports(world):
    """Auditor of A: A's report only; national auditor: all three; agent: 403."""
    monthly_reports_generate(actor=Actor.system("tests"), month=OCT)
    a = MonthlyReport.objects.get(ministry=world.a)
    page = browser(world.auditor_a).get("/console/rapports/").content.decode()
    assert f'data-report="{a.pk}"' in page and a.sha256 in page
    assert page.count("data-report=") == 1
    national_page = browser(world.national_auditor).get("/console/rapports/").content.decode()
    assert national_page.count("data-report=") == 3
    assert browser(world.agent_a).get("/console/rapports/").status_code == 403


def test_report_download_returns_the_stored_bytes_with_their_digest(world):
    """The file is the stored bytes; its SHA-256 is in the headers; it is audited."""
    monthly_reports_generate(actor=Actor.system("tests"), month=OCT)
    report = MonthlyReport.objects.get(ministry=world.a)
    response = browser(world.admin_a).get(f"/console/rapports/{report.pk}/")
    assert response.status_code == 200
    assert response.content == bytes(report.content)
    assert response["X-Checksum-SHA256"] == hashlib.sha256(response.content).hexdigest()
    assert response["Repr-Digest"].startswith("sha-256=:")
    assert "usage-report-alpha-2026-10.json" in response["Content-Disposition"]
    assert AuditEvent.objects.filter(action="usage.report_download").count() == 1


def test_other_ministry_and_national_reports_are_not_found(world):
    """An auditor of A gets 404 for B's report and for the national one."""
    monthly_reports_generate(actor=Actor.system("tests"), month=OCT)
    for report in MonthlyReport.objects.exclude(ministry=world.a):
        assert browser(world.auditor_a).get(f"/console/rapports/{report.pk}/").status_code == 404
    national = MonthlyReport.objects.get(ministry=None)
    assert browser(world.operator).get(f"/console/rapports/{national.pk}/").status_code == 200
