"""The console's export page: same roles, same scope, same audit as the API."""

import csv
import io

import pytest
from django.test import Client

from audit.models import AuditEvent
from tests.usage_scenes import october_sessions, october_usage

pytestmark = pytest.mark.django_db

FORM = {
    "dataset": "usage",
    "format": "csv",
    "granularity": "month",
    "delimiter": ";",
    "from": "2026-10-01",
    "to": "2026-10-31",
    "ministry": "",
    "unit": "",
}


def browser(agent, language="en"):
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(agent)
    return client


def test_export_form_offers_only_readable_ministries(world):
    """An auditor of A picks among A only; a national auditor among all."""
    page = browser(world.auditor_a).get("/console/exports/").content.decode()
    assert 'value="alpha"' in page and 'value="bravo"' not in page
    national = browser(world.national_auditor).get("/console/exports/").content.decode()
    assert 'value="alpha"' in national and 'value="bravo"' in national


def test_french_page_renders(world):
    """The page renders in the console's default language."""
    assert browser(world.admin_a, "fr").get("/console/exports/").status_code == 200


def test_submitting_the_form_downloads_the_export(world):
    """A valid form streams the file, scoped to the caller, and audits it."""
    october_usage(world)
    response = browser(world.auditor_a).post("/console/exports/", FORM)
    assert response.status_code == 200 and response.streaming
    raw = b"".join(response.streaming_content)
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert [r["ministry"] for r in rows] == ["alpha"]
    assert AuditEvent.objects.filter(action="usage.export").count() == 1


def test_sessions_xlsx_from_the_console(world):
    """Any dataset and format the API has."""
    october_sessions(world)
    response = browser(world.operator).post(
        "/console/exports/", {**FORM, "dataset": "sessions", "format": "xlsx"}
    )
    assert response["Content-Type"].endswith("spreadsheetml.sheet")
    assert b"".join(response.streaming_content)[:2] == b"PK"


def test_bad_form_shows_errors_and_writes_nothing(world):
    """A period ending before it starts: 400 with the error, nothing audited."""
    response = browser(world.auditor_a).post("/console/exports/", {**FORM, "to": "2026-09-01"})
    assert response.status_code == 400
    assert 'data-field="to"' in response.content.decode()
    assert not AuditEvent.objects.filter(action="usage.export").exists()


def test_other_ministry_is_not_found(world):
    """Posting B's code as an auditor of A: 404, nothing audited."""
    response = browser(world.auditor_a).post("/console/exports/", {**FORM, "ministry": "bravo"})
    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action="usage.export").exists()


@pytest.mark.parametrize("who", ["agent_a", "agent_b"])
def test_agents_may_not_export_from_the_console(world, who):
    """Plain agents: 403 on the page and on the form."""
    assert browser(getattr(world, who)).get("/console/exports/").status_code == 403
    assert browser(getattr(world, who)).post("/console/exports/", FORM).status_code == 403


def test_home_links_for_exporting_roles_only(world):
    """Auditors, admins and operators see the links; agents do not."""
    for user in (world.auditor_a, world.admin_a, world.operator, world.national_auditor):
        page = browser(user).get("/console/").content.decode()
        assert 'id="link-exports"' in page and 'id="link-reports"' in page
    assert 'id="link-exports"' not in browser(world.agent_a).get("/console/").content.decode()


def test_anonymous_goes_to_login(world):
    """No session: redirected to the login page."""
    response = Client().get("/console/exports/")
    assert response.status_code == 302 and "/console/connexion/" in response["Location"]
