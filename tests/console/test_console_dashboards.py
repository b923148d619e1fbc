"""Dashboards: figures from the daily roll-up and sessions, access by role, and a real
browser drawing the national dashboard's charts beside their tables."""

import os
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from console.dashboards import dashboard_data
from tests.support.browser import ARGS, CHROMIUM
from tests.usage_scenes import two_weeks_of_usage

ROOT = Path(__file__).resolve().parents[2]


def browser_client(agent):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(agent)
    return client


@pytest.mark.django_db
def test_dashboard_figures(world):
    two_weeks_of_usage(world)
    world.a.rollout_target_agents = 50
    world.a.rollout_target_date = timezone.localdate() + timedelta(days=90)
    world.a.save()
    data = dashboard_data(ministry=world.a)
    meetings = data["activity"]["series"][0]["values"]
    assert meetings[-2:] == [3, 3] and sum(meetings) == 6
    assert data["adoption"]["series"][0]["values"][-1] == 2
    assert data["adoption"]["series"][1]["values"][-1] == 50  # the goal line
    national = dashboard_data(ministry=None)
    assert sum(national["activity"]["series"][0]["values"]) == 16
    assert sum(national["activity"]["series"][1]["values"]) == 16 * 60


@pytest.mark.django_db
def test_dashboard_access(world):
    two_weeks_of_usage(world)
    assert (
        browser_client(world.national_auditor).get("/console/tableau-de-bord/").status_code == 200
    )
    own = browser_client(world.auditor_a).get("/console/tableau-de-bord/")
    assert own.status_code == 302 and own["Location"].endswith("/tableau-de-bord/alpha/")
    assert browser_client(world.auditor_a).get("/console/tableau-de-bord/bravo/").status_code == 403
    assert browser_client(world.admin_b).get("/console/tableau-de-bord/alpha/").status_code == 403
    assert browser_client(world.agent_a).get("/console/tableau-de-bord/").status_code == 403
    world.a.rollout_target_agents = 500
    world.a.rollout_target_date = timezone.localdate() - timedelta(days=1)
    world.a.save()
    page = browser_client(world.admin_a).get("/console/tableau-de-bord/alpha/").content.decode()
    assert 'id="activity-table"' in page and "bravo" not in page
    # The goal date has passed without the goal reached: the forecast says late.
    assert 'id="forecast"' in page and "fr-badge--error" in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    not shutil.which(CHROMIUM) and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed (make test installs it)",
)
def test_national_dashboard_renders_in_chromium(world, live_server, monkeypatch, tmp_path):
    from playwright.sync_api import sync_playwright

    two_weeks_of_usage(world)
    session = browser_client(world.national_auditor).cookies["sessionid"].value
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    shots = ROOT / "var" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(locale="fr-FR")
            context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(f"{exc} {exc.stack}"))
            page.goto(f"{live_server.url}/console/tableau-de-bord/")
            page.wait_for_selector("#minutes-chart[data-drawn=yes]")
            bars = page.locator("#meetings-chart rect.console-chart__bar").count()
            minutes = page.locator("#minutes-chart polyline.console-chart__line").count()
            lines = page.locator("#adoption-chart polyline.console-chart__line").count()
            seats = page.locator("#seats-chart rect.console-chart__bar").count()
            last_row = page.locator("#activity-table tbody tr").last.inner_text().split("\t")
            page.screenshot(path=str(shots / "national-dashboard.png"), full_page=True)
        finally:
            browser.close()
    # DSFR's own module logs an unrelated error on every console page; ours must not.
    assert not [e for e in errors if "charts.js" in e], errors
    assert bars == 26 and minutes == 1 and lines >= 1 and seats == 2
    assert last_row[1:] == ["8", "480"]  # this week's national meetings and minutes
    assert (shots / "national-dashboard.png").stat().st_size > 10_000
