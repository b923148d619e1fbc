"""Directory (SCIM) tokens: expiry, rotation with an overlap, revocation, last use,
who manages them (API and console, tenant boundary from the other side), and the
rule that a directory never removes its ministry's last active admin."""

import io
import json
import os
import shutil
import threading
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import close_old_connections, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.grants import LastAdmin
from accounts.models import Agent, Role, RoleGrant
from audit.actor import Actor
from audit.models import AuditEvent
from scim import services
from scim.gauges import directory_token_expiry
from scim.models import DirectoryToken
from scim.protocol import DirectoryPrincipal
from scim.tokens import directory_token_issue
from tests.factories import AgentFactory
from tests.support.browser import ARGS, CHROMIUM
from tests.support.clients import client_as, client_with_token

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SYSTEM = Actor.system("tests")


def scim(clear) -> Client:
    """A directory's client; it asks for English, as machine clients get by default."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {clear}", HTTP_ACCEPT_LANGUAGE="en")


def users(clear):
    return scim(clear).get("/scim/v2/Users")


def issue(ministry, **options):
    return directory_token_issue(actor=SYSTEM, ministry=ministry, **options)


def deactivate(clear, agent):
    body = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": False}]}
    return scim(clear).patch(
        f"/scim/v2/Users/{agent.pk}", json.dumps(body), content_type="application/scim+json"
    )


def says(detail, msgid, **params):
    """``detail`` is ``msgid`` with its values, in English: a SCIM request without
    Accept-Language is answered in English (one language per answer)."""
    expected = msgid % params if params else msgid
    assert detail == expected, (detail, expected)


def utc(moment):
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


class later:
    """Move the clock forward by ``days`` inside the block (Django's timezone.now)."""

    def __init__(self, monkeypatch, days):
        self.monkeypatch, self.shift = monkeypatch, timedelta(days=days)

    def __enter__(self):
        real = timezone.now
        self.monkeypatch.setattr(timezone, "now", lambda: real() + self.shift)

    def __exit__(self, *exc):
        self.monkeypatch.undo()


# -- Expiry -------------------------------------------------------------------------


def test_a_token_expires_after_the_default_or_the_chosen_lifetime(world, settings):
    """Without a choice a token lives SCIM_TOKEN_LIFETIME_DAYS; a shorter one is kept."""
    settings.SCIM_TOKEN_LIFETIME_DAYS = 365
    before = timezone.now()
    token, _ = issue(world.a)
    assert before + timedelta(days=365) <= token.expires_at <= timezone.now() + timedelta(days=365)
    short, _ = issue(world.a, expires_in_days=30)
    assert short.expires_at - short.created_at < timedelta(days=30, seconds=5)


def test_an_expired_token_is_refused_with_a_clear_scim_401(world):
    """Past expires_at the directory gets a 401 naming the expiry, no part of the secret."""
    token, clear = issue(world.a)
    assert users(clear).status_code == 200
    DirectoryToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    refused = users(clear)
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    body = refused.json()
    assert body["schemas"] == [ERROR]
    token.refresh_from_db()
    says(
        body["detail"],
        "This directory token expired on %(date)s. A ministry admin issues a new one in the "
        "console (Directory sync).",
        date=utc(token.expires_at),
    )
    assert clear.split("_", 1)[1][:6] not in refused.content.decode()


@pytest.mark.parametrize(
    "options,field",
    [
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 366}, "expires_in_days"),
        ({"overlap_days": -1}, "overlap_days"),
        ({"overlap_days": 31}, "overlap_days"),
    ],
)
def test_lifetime_and_overlap_out_of_bounds_are_refused_and_nothing_changes(
    world, settings, options, field
):
    """Bounds come from the settings; a refusal names the field and writes nothing."""
    settings.SCIM_TOKEN_LIFETIME_DAYS, settings.SCIM_TOKEN_MAX_OVERLAP_DAYS = 365, 30
    current, _ = issue(world.a)
    response = client_as(world.admin_a).post(
        "/api/v1/directory-tokens/", {"ministry": "alpha", **options}, format="json"
    )
    assert response.status_code == 400
    assert field in json.dumps(response.json())
    assert list(DirectoryToken.objects.values_list("pk", "replaced_at", "revoked_at")) == [
        (current.pk, None, None)
    ]


# -- Rotation -------------------------------------------------------------------------


def test_rotation_keeps_the_old_token_valid_for_the_overlap_only(world, settings, monkeypatch):
    """Both tokens work during the overlap; after it the old one answers 401, the new
    one keeps working."""
    settings.SCIM_TOKEN_OVERLAP_DAYS = 7
    old, old_clear = issue(world.a)
    new, new_clear = issue(world.a)
    old.refresh_from_db()
    assert old.replaced_at is not None and old.revoked_at is None
    assert old.replaced_at + timedelta(days=7) == old.expires_at
    assert (old.state(), new.state()) == ("overlap", "active")
    assert users(old_clear).status_code == 200
    assert users(new_clear).status_code == 200
    with later(monkeypatch, 6):
        assert users(old_clear).status_code == 200
    with later(monkeypatch, 8):
        refused = users(old_clear)
        assert refused.status_code == 401
        says(
            refused.json()["detail"],
            "This directory token was replaced by a newer one; its overlap ended on %(date)s. "
            "Configure the directory with the new token.",
            date=utc(old.expires_at),
        )
        assert users(new_clear).status_code == 200
    assert AuditEvent.objects.filter(action="directory_token.replace").count() == 1


def test_an_overlap_of_zero_stops_the_old_token_at_once(world):
    """An admin may rotate without overlap: the old token is revoked immediately."""
    _, old_clear = issue(world.a)
    _, new_clear = issue(world.a, overlap_days=0)
    assert users(old_clear).status_code == 401
    assert users(new_clear).status_code == 200


def test_rotating_again_during_an_overlap_keeps_two_tokens_usable(world):
    """The oldest is revoked when a third is issued: never more than two usable."""
    _, first = issue(world.a)
    _, second = issue(world.a)
    _, third = issue(world.a)
    assert [users(c).status_code for c in (first, second, third)] == [401, 200, 200]
    usable = DirectoryToken.objects.filter(ministry=world.a, revoked_at__isnull=True)
    assert usable.count() == 2
    assert usable.filter(replaced_at__isnull=True).count() == 1


def test_rotation_in_one_ministry_leaves_the_other_alone(world):
    """Issuing A's next token neither replaces nor revokes B's."""
    _, b_clear = issue(world.b)
    issue(world.a, overlap_days=0)
    issue(world.a, overlap_days=0)
    assert users(b_clear).status_code == 200
    b_token = DirectoryToken.objects.get(ministry=world.b)
    assert (b_token.replaced_at, b_token.revoked_at) == (None, None)


# -- Revocation and last use ---------------------------------------------------------


def test_revoking_stops_the_token_at_once_and_last_use_is_shown(world):
    """The API lists last use and state; DELETE revokes and the directory gets 401."""
    token, clear = issue(world.a)
    admin = client_as(world.admin_a)
    listed = admin.get("/api/v1/directory-tokens/").json()["results"][0]
    assert (listed["last_used_at"], listed["state"]) == (None, "active")
    assert listed["expires_at"] and "token" not in listed and "digest" not in listed
    assert users(clear).status_code == 200
    listed = admin.get("/api/v1/directory-tokens/").json()["results"][0]
    assert listed["last_used_at"] is not None
    revoked = admin.delete(f"/api/v1/directory-tokens/{token.pk}/")
    assert (revoked.status_code, revoked.json()["state"]) == (200, "revoked")
    refused = users(clear)
    assert refused.status_code == 401
    says(refused.json()["detail"], "This directory token has been revoked.")


def test_last_use_is_written_at_most_once_a_minute(world):
    """A busy directory does not write its token's row on every request."""
    token, clear = issue(world.a)
    users(clear)
    token.refresh_from_db()
    first = token.last_used_at
    with CaptureQueriesContext(connection) as queries:
        users(clear)
    token.refresh_from_db()
    assert token.last_used_at == first
    # Not even a conditional UPDATE: a recent use costs no statement.
    assert not [q for q in queries if 'UPDATE "scim_directorytoken"' in q["sql"]]
    DirectoryToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    users(clear)
    token.refresh_from_db()
    assert token.last_used_at > first


def test_expiring_tokens_are_flagged_and_measured(world, settings):
    """Within SCIM_TOKEN_WARN_DAYS the state says so; the gauges count tokens by state
    and give the soonest expiry, without naming any ministry."""
    settings.SCIM_TOKEN_WARN_DAYS = 14
    token, _ = issue(world.a, expires_in_days=10)
    issue(world.b)
    issue(world.b)  # B's first token is now in its overlap
    assert token.state() == "expiring"
    by_state, soonest = directory_token_expiry()
    counts = {s.labels["state"]: s.value for s in by_state.samples}
    assert counts == {"active": 1, "expiring": 1, "overlap": 1, "expired": 0}
    assert 9 * 86400 < soonest.samples[0].value <= 10 * 86400
    DirectoryToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    by_state, soonest = directory_token_expiry()
    counts = {s.labels["state"]: s.value for s in by_state.samples}
    assert (counts["expiring"], counts["expired"]) == (0, 1)
    assert soonest.samples[0].value <= 0
    assert all(set(s.labels) <= {"state"} for f in (by_state, soonest) for s in f.samples)


def test_the_shell_command_issues_with_a_lifetime_and_an_overlap(world):
    """``manage.py scim_token`` takes --days and --overlap-days and refuses bad bounds."""
    _, old_clear = issue(world.a)
    out, err = io.StringIO(), io.StringIO()
    options = ["--days", "30", "--overlap-days", "0"]
    call_command("scim_token", "alpha", *options, stdout=out, stderr=err)
    clear = out.getvalue().split("Token (shown once): ", 1)[1].strip()
    assert users(clear).status_code == 200 and users(old_clear).status_code == 401
    token = DirectoryToken.objects.get(ministry=world.a, revoked_at__isnull=True)
    assert token.expires_at - token.created_at < timedelta(days=30, seconds=5)
    assert clear not in err.getvalue()
    with pytest.raises(CommandError):
        call_command("scim_token", "alpha", "--overlap-days", "99", stdout=out, stderr=err)
    assert DirectoryToken.objects.filter(ministry=world.a).count() == 2


# -- Who manages them: the API ----------------------------------------------------------


def test_an_admin_issues_with_options_and_never_for_another_ministry(world):
    """Admin of A issues A's token with a lifetime and overlap; B's admin cannot list,
    issue or revoke A's."""
    admin_a, admin_b = client_as(world.admin_a), client_as(world.admin_b)
    issued = admin_a.post(
        "/api/v1/directory-tokens/",
        {"ministry": "alpha", "expires_in_days": 90, "overlap_days": 2},
        format="json",
    )
    assert issued.status_code == 201
    body = issued.json()
    assert body["token"].startswith("scim_") and body["state"] == "active"
    token = DirectoryToken.objects.get(pk=body["id"])
    assert token.expires_at - token.created_at < timedelta(days=90, seconds=5)
    assert admin_b.get("/api/v1/directory-tokens/").json()["count"] == 0
    assert admin_b.get(f"/api/v1/directory-tokens/{token.pk}/").status_code == 404
    assert admin_b.delete(f"/api/v1/directory-tokens/{token.pk}/").status_code == 404
    assert admin_b.post("/api/v1/directory-tokens/", {"ministry": "alpha"}).status_code == 400
    assert list(DirectoryToken.objects.values_list("pk", "replaced_at", "revoked_at")) == [
        (token.pk, None, None)
    ]


def test_an_auditor_reads_but_cannot_issue_or_revoke(world):
    """Auditors see the metadata only."""
    token, _ = issue(world.a)
    auditor = client_as(world.auditor_a)
    assert auditor.get("/api/v1/directory-tokens/").json()["count"] == 1
    assert auditor.post("/api/v1/directory-tokens/", {"ministry": "alpha"}).status_code == 403
    assert auditor.delete(f"/api/v1/directory-tokens/{token.pk}/").status_code == 403
    assert list(DirectoryToken.objects.values_list("pk", "revoked_at")) == [(token.pk, None)]


def test_api_tokens_cannot_issue_directory_tokens(world):
    """Even an admin API token of the ministry cannot mint a directory token."""
    robot = client_with_token(world.admin_a, world.a, Role.MINISTRY_ADMIN)
    response = robot.post("/api/v1/directory-tokens/", {"ministry": "alpha"})
    assert response.status_code == 403
    assert not DirectoryToken.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_admins_rotating_at_once_leave_one_current_token(world):
    """Simultaneous issues are ordered by the ministry's row: one current token, the
    other replaced, never an IntegrityError."""
    issue(world.a)
    barrier = threading.Barrier(2)
    failures = []

    def rotate():
        try:
            barrier.wait()
            issue(world.a)
        except Exception as exc:  # noqa: BLE001 - any failure is the test's failure
            failures.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    usable = DirectoryToken.objects.filter(ministry=world.a, revoked_at__isnull=True)
    assert usable.count() == 2 and usable.filter(replaced_at__isnull=True).count() == 1


# -- Who manages them: the console --------------------------------------------------


PAGE = "/console/ministeres/{}/annuaire/"


def test_the_console_page_shows_the_connection_in_french(world, client):
    """An admin sees the SCIM URL and each token's prefix, author, dates and state."""
    token, clear = directory_token_issue(
        actor=Actor(user=world.admin_a), ministry=world.a, expires_in_days=10
    )
    users(clear)
    client.force_login(world.admin_a)
    html = client.get(PAGE.format("alpha")).content.decode()
    assert '<html lang="fr"' in html
    assert "Synchronisation de l’annuaire" in html
    assert "http://testserver/scim/v2/" in html
    assert token.prefix in html and world.admin_a.email in html
    assert "expire bientôt" in html and "jamais" not in html
    assert 'id="current-token-warning"' in html and "Émettez le suivant" in html
    assert clear not in html
    ministry_page = client.get("/console/ministeres/alpha/").content.decode()
    assert PAGE.format("alpha") in ministry_page


def issue_form(client, **fields):
    """The issue form as the page gives it: its one-time value included."""
    html = client.get(PAGE.format("alpha")).content.decode()
    once = html.split('name="once" value="', 1)[1].split('"', 1)[0]
    return {"action": "issue", "once": once, **fields}


def test_the_console_issues_once_and_revokes(world, client):
    """Issuing shows the clear token once; the next page load does not; revoking stops it."""
    client.force_login(world.admin_a)
    form = issue_form(client, expires_in_days="30", overlap_days="")
    issued = client.post(PAGE.format("alpha"), form)
    assert issued.status_code == 200
    assert "no-store" in issued["Cache-Control"]
    html = issued.content.decode()
    token = DirectoryToken.objects.get(ministry=world.a)
    start = html.index('id="token-clear"')
    clear = html[start:].split('value="', 1)[1].split('"', 1)[0]
    assert clear.startswith(token.prefix)
    assert users(clear).status_code == 200
    assert clear not in client.get(PAGE.format("alpha")).content.decode()
    # Reloading the answer sends the same form again: refused, no second token.
    again = client.post(PAGE.format("alpha"), form)
    assert again.status_code == 400
    assert "aucun nouveau jeton n’a été émis" in again.content.decode()
    assert DirectoryToken.objects.filter(ministry=world.a).count() == 1
    assert 'id="token-clear"' not in again.content.decode()
    revoked = client.post(PAGE.format("alpha"), {"action": "revoke", "token": str(token.pk)})
    assert revoked.status_code == 302
    assert users(clear).status_code == 401
    assert "est révoqué" in client.get(PAGE.format("alpha")).content.decode()


def test_the_console_refuses_bad_input_and_writes_nothing(world, client):
    """An overlap out of bounds or a non-number is named; no token is issued."""
    client.force_login(world.admin_a)
    for overlap in ("99", "deux"):
        response = client.post(PAGE.format("alpha"), issue_form(client, overlap_days=overlap))
        assert response.status_code == 400
        assert 'id="directory-errors"' in response.content.decode()
    bad = client.post(PAGE.format("alpha"), {"action": "revoke", "token": "not-a-uuid"})
    assert bad.status_code == 400
    assert not DirectoryToken.objects.exists()


@pytest.mark.parametrize("who", ["admin_b", "auditor_a", "agent_a"])
def test_the_console_page_is_for_the_ministrys_admins_only(world, client, who):
    """Another ministry's admin, an auditor or an agent gets 403 and changes nothing."""
    token, clear = issue(world.a)
    client.force_login(getattr(world, who))
    assert client.get(PAGE.format("alpha")).status_code == 403
    assert client.post(PAGE.format("alpha"), {"action": "issue"}).status_code == 403
    revoke = client.post(PAGE.format("alpha"), {"action": "revoke", "token": str(token.pk)})
    assert revoke.status_code == 403
    assert list(DirectoryToken.objects.values_list("pk", "revoked_at")) == [(token.pk, None)]
    assert users(clear).status_code == 200


def test_an_admin_cannot_reach_another_ministrys_tokens_through_their_own_page(world, client):
    """B's token id posted to A's page is not found among A's tokens."""
    b_token, b_clear = issue(world.b)
    client.force_login(world.admin_a)
    response = client.post(PAGE.format("alpha"), {"action": "revoke", "token": str(b_token.pk)})
    assert response.status_code == 400
    assert users(b_clear).status_code == 200


# -- The last active admin -------------------------------------------------------------


def _untouched(agent):
    agent.refresh_from_db()
    assert agent.is_active and agent.erase_after is None
    assert not AuditEvent.objects.filter(
        action__in=["agent.deactivate", "agent.erasure_schedule"], object_id=str(agent.pk)
    ).exists()


def test_a_directory_cannot_deactivate_or_delete_the_last_admin(world):
    """PATCH active=false, PUT active=false and DELETE answer 409 with the reason;
    nothing changes."""
    _, clear = issue(world.a)
    admin = world.admin_a
    patched = deactivate(clear, admin)
    assert patched.status_code == 409
    body = patched.json()
    assert body["schemas"] == [ERROR] and body["status"] == "409"
    assert "scimType" not in body or body["scimType"] is None
    says(
        body["detail"],
        "%(email)s is the last active admin of their ministry: a directory cannot deactivate "
        "or delete them. Grant the ministry admin role to another agent first.",
        email=admin.email,
    )
    current = scim(clear).get(f"/scim/v2/Users/{admin.pk}").json()
    put = scim(clear).put(
        f"/scim/v2/Users/{admin.pk}",
        json.dumps({**current, "active": False}),
        content_type="application/scim+json",
    )
    assert put.status_code == 409
    deleted = scim(clear).delete(f"/scim/v2/Users/{admin.pk}")
    assert deleted.status_code == 409
    _untouched(admin)


def test_another_admin_may_go_while_one_stays(world):
    """With two active admins the first goes; the second is then the last and stays."""
    _, clear = issue(world.a)
    second = AgentFactory(ministry=world.a)
    RoleGrant.objects.create(agent=second, role=Role.MINISTRY_ADMIN, ministry=world.a)
    assert deactivate(clear, second).status_code == 200
    assert deactivate(clear, world.admin_a).status_code == 409
    _untouched(world.admin_a)
    # An inactive admin does not count; a plain agent is never concerned.
    assert scim(clear).delete(f"/scim/v2/Users/{world.agent_a.pk}").status_code == 204


def test_the_rule_counts_only_the_ministrys_own_admins(world):
    """B's admin, or an admin grant of A held by a deactivated agent, do not save A's
    last admin."""
    _, clear = issue(world.a)
    gone = AgentFactory(ministry=world.a, is_active=False, deactivated_at=timezone.now())
    RoleGrant.objects.create(agent=gone, role=Role.MINISTRY_ADMIN, ministry=world.a)
    assert deactivate(clear, world.admin_a).status_code == 409
    _untouched(world.admin_a)


@pytest.mark.django_db(transaction=True)
def test_two_directories_deactivating_the_last_two_admins_at_once_leave_one(world):
    """The admins' rows are locked in one order: of two simultaneous deactivations of
    the only two admins, exactly one succeeds."""
    second = AgentFactory(ministry=world.a)
    RoleGrant.objects.create(agent=second, role=Role.MINISTRY_ADMIN, ministry=world.a)
    token, _ = issue(world.a)
    actor = Actor(user=DirectoryPrincipal(token), label=f"scim:{token.prefix}")
    barrier = threading.Barrier(2)
    outcomes = []

    def leave(agent):
        try:
            barrier.wait()
            services.user_delete(actor=actor, agent=Agent.objects.get(pk=agent.pk))
            outcomes.append("gone")
        except LastAdmin:
            outcomes.append("refused")
        finally:
            close_old_connections()

    threads = [threading.Thread(target=leave, args=(a,)) for a in (world.admin_a, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["gone", "refused"]
    assert Agent.objects.filter(pk__in=[world.admin_a.pk, second.pk], is_active=True).count() == 1


# -- The console page on a phone ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    not shutil.which(CHROMIUM) and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed (make test installs it)",
)
def test_the_console_page_fits_a_375_px_phone(world, live_server, monkeypatch):
    """At 375 px the page has no horizontal scroll, before and after issuing a token
    (whose long secret wraps inside its field), and the issue button works."""
    from playwright.sync_api import sync_playwright

    issue(world.a)
    client = Client()
    client.force_login(world.admin_a)
    session = client.cookies["sessionid"].value
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    shots = Path(__file__).resolve().parents[2] / "var" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    overflow = "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(locale="fr-FR", viewport={"width": 375, "height": 812})
            context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
            page = context.new_page()
            page.goto(f"{live_server.url}{PAGE.format('alpha')}")
            before = page.evaluate(overflow)
            page.fill("#overlap_days", "0")
            page.click("#token-issue button[name=action]")
            page.wait_for_selector("#token-clear")
            clear = page.input_value("#token-clear")
            after = page.evaluate(overflow)
            page.screenshot(path=str(shots / "directory-375.png"), full_page=True)
        finally:
            browser.close()
    assert (before, after) == (0, 0)
    assert clear.startswith("scim_")
    assert users(clear).status_code == 200
    assert DirectoryToken.objects.filter(ministry=world.a, revoked_at__isnull=True).count() == 1
