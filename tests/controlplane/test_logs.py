"""Logs: JSON lines with a request id (echoed in X-Request-ID and carried into Celery
tasks), access lines without query strings, and no token, secret or full personal
data in any line, proved on the ProConnect login and SCIM paths at DEBUG level."""

import io
import json
import logging
import re
from contextlib import contextmanager

import pytest
from django.test import Client

from audit.actor import Actor
from controlplane import logs
from controlplane.celery import app as celery_app
from scim.tokens import directory_token_issue
from tests.factories import AgentFactory

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
DEACTIVATE = {"op": "replace", "path": "active", "value": False}


@contextmanager
def emitted_lines(level=logging.DEBUG):
    """What the configured stderr handler writes (formatter, filter and all), as lines."""
    root = logging.getLogger()
    handler = next(
        h for h in root.handlers if isinstance(h.formatter, logs.JsonFormatter | logs.TextFormatter)
    )
    buffer = io.StringIO()
    previous_stream, previous_level = handler.setStream(buffer), root.level
    root.setLevel(level)
    lines: list[str] = []
    try:
        yield lines
    finally:
        handler.setStream(previous_stream)
        root.setLevel(previous_level)
        lines.extend(buffer.getvalue().splitlines())


def entries(lines):
    return [json.loads(line) for line in lines]


def test_production_logs_are_json_with_the_request_id(client):
    """Every line is a JSON object; a request's lines carry the id it answers with."""
    with emitted_lines() as lines:
        response = client.get("/healthz?token=abc", HTTP_X_REQUEST_ID="lb-1234567890")
    assert response["X-Request-ID"] == "lb-1234567890"
    access = [e for e in entries(lines) if e["logger"] == "controlplane.access"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == "lb-1234567890"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/healthz", 200)
    assert line["duration_ms"] >= 0 and line["level"] == "INFO"
    assert "token" not in json.dumps(line)  # the query string is never logged


def test_django_request_lines_carry_the_id_but_not_the_query_string(client):
    """Django logs a 404 after the middleware is done: its line still has the id, and
    not the request object whose repr holds the query string."""
    with emitted_lines() as lines:
        response = client.get("/no/such/page/?state=abcdef123456&login_hint=x")
    (warning,) = [e for e in entries(lines) if e["logger"] == "django.request"]
    assert warning["request_id"] == response["X-Request-ID"]
    assert warning["status_code"] == 404 and "request" not in warning
    assert not [line for line in lines if "abcdef123456" in line or "login_hint" in line]


@pytest.mark.parametrize(
    "incoming", ["", "short", "x" * 200, 'quote"s and spaces 123', "new\nline-12345678"]
)
def test_an_insane_request_id_is_replaced(client, incoming):
    """Ids that are too short, too long or carry odd characters are not trusted."""
    response = client.get("/healthz", HTTP_X_REQUEST_ID=incoming)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_log_lines_outside_requests_have_no_request_id():
    """A line logged outside any request says so (null), it does not reuse an old id."""
    with emitted_lines() as lines:
        logging.getLogger("tests").warning("outside")
    (entry,) = entries(lines)
    assert entry["request_id"] is None and entry["message"] == "outside"


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        ("id_token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl", "eyJzdWIi", "[jwt]"),
        ("Authorization: Bearer abcdef123456", "abcdef123456", "Bearer [redacted]"),
        ("GET /oidc/callback/?code=SplxlOBeZQ&state=af0ifjsldkj", "SplxlOBeZQ", "code=[redacted]"),
        ("GET /oidc/callback/?code=SplxlOBeZQ&state=af0ifjsldkj", "af0ifjsldkj", "state="),
        ("token vcp_0a1b2c3d_" + "Z" * 43, "Z" * 43, "vcp_0a1b2c3d_[redacted]"),
        ("directory scim_AbCdEfGh" + "q" * 35, "q" * 35, "scim_AbCdEfGh[redacted]"),
        ("{'client_secret': 's3cr3t-value', 'x': 1}", "s3cr3t-value", "'client_secret': '"),
        ('{"access_token": "opaque-123", "x": 1}', "opaque-123", '"access_token": "[redacted]"'),
        ("login of jeanne.martin@alpha.gouv.fr", "jeanne.martin@", "j***@alpha.gouv.fr"),
        ("client_secret=verysecret&x=1", "verysecret", "client_secret=[redacted]"),
    ],
)
def test_redaction_masks_secrets_and_emails(text, secret, kept):
    """The formatters' safety net masks tokens, OIDC parameters, secrets and emails."""
    redacted = logs.redact(text)
    assert secret not in redacted and kept in redacted


def test_redaction_applies_to_messages_extras_and_tracebacks():
    """Whatever part of a record carries the secret, the emitted line does not."""
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"
    with emitted_lines() as lines:
        logger = logging.getLogger("tests")
        logger.info("got %s", jwt, extra={"detail": f"Bearer {jwt}"})
        try:
            raise ValueError(f"bad token {jwt} for agent@alpha.gouv.fr")
        except ValueError:
            logger.exception("failed")
    assert len(lines) == 2
    assert all(jwt not in line and "agent@alpha" not in line for line in lines)
    assert "[jwt]" in entries(lines)[1]["exception"]


def test_text_format_is_redacted_too(settings):
    """The demo's readable format goes through the same safety net."""
    formatter = logs.TextFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "mail %s", ("a.b@c.gouv.fr",), None)
    line = formatter.format(record)
    assert "a.b@c.gouv.fr" not in line and "a***@c.gouv.fr" in line and "[-]" in line


@pytest.mark.django_db(transaction=True)
def test_login_and_scim_paths_log_no_secret_or_personal_data(rp, live_server):
    """At DEBUG, a full ProConnect login and SCIM calls write lines, but none with the
    access token, ID token, code, state, client secret, directory token or an email."""
    seen = {}

    def keep_tokens(body):
        seen["access_token"], seen["id_token"] = body["access_token"], body["id_token"]

    rp.mitm.rewrite_tokens(keep_tokens)
    jeanne = AgentFactory(email="jeanne.martin@alpha.gouv.fr", ministry=rp.alpha, imported=True)
    _, directory_token = directory_token_issue(actor=Actor.system("tests"), ministry=rp.alpha)
    scim = Client(HTTP_AUTHORIZATION=f"Bearer {directory_token}")
    new_email = "claire.dupont@alpha.gouv.fr"
    with emitted_lines(logging.DEBUG) as lines:
        response = rp.browser().login(jeanne.email)
        created = scim.post(
            "/scim/v2/Users",
            json.dumps({"schemas": [USER], "userName": new_email, "active": True}),
            content_type="application/scim+json",
        )
        user_id = created.json()["id"]
        scim.get(f'/scim/v2/Users?filter=userName eq "{new_email}"')
        scim.patch(
            f"/scim/v2/Users/{user_id}",
            json.dumps({"schemas": [PATCH], "Operations": [DEACTIVATE]}),
            content_type="application/scim+json",
        )
        Client(HTTP_AUTHORIZATION="Bearer scim_wrong-token-value-1234567890").get("/scim/v2/Users")
    assert response.url.endswith("/console/") and created.status_code == 201
    callback = next(r for r in response.history if "/oidc/callback/" in r.url)
    query = dict(p.split("=", 1) for p in callback.url.split("?", 1)[1].split("&"))
    secrets = {
        "access token": seen["access_token"],
        "ID token": seen["id_token"],
        "authorization code": query["code"],
        "state": query["state"],
        "client secret": rp.idp.client_secret,
        "directory token": directory_token,
        "directory token body": directory_token.split("_", 1)[1],
        "agent email": jeanne.email,
        "SCIM user email": new_email,
    }
    leaks = [(name, line) for line in lines for name, s in secrets.items() if s in line]
    assert not leaks, leaks
    # Not vacuous: the paths did log, at DEBUG, with their request ids.
    logged = entries(lines)
    paths = {e.get("path") for e in logged if e["logger"] == "controlplane.access"}
    assert {"/oidc/authenticate/", "/oidc/callback/", "/scim/v2/Users"} <= paths
    assert all(e["request_id"] for e in logged if e["logger"] == "controlplane.access")
    assert any(e["level"] == "DEBUG" for e in logged)


def test_a_task_carries_the_request_id_of_its_request(monkeypatch):
    """Publishing a task inside a request puts the request id in its headers; the
    worker side restores it for the task's lines and then forgets it."""
    published = {}
    from celery import signals

    token = logs.request_id_set("req-0123456789")
    try:
        headers = {}
        signals.before_task_publish.send(sender="x", headers=headers, body=None)
        published.update(headers)
    finally:
        logs.request_id_reset(token)
    assert published["request_id"] == "req-0123456789"

    class Request:
        is_eager = False
        request_id = published["request_id"]
        headers = None

    class Task:
        request = Request()

    seen = []
    signals.task_prerun.send(sender=Task, task=Task, task_id="t1")
    seen.append(logs.request_id_get())
    signals.task_postrun.send(sender=Task, task=Task, task_id="t1")
    seen.append(logs.request_id_get())
    assert seen == ["req-0123456789", None]
    assert celery_app.conf.task_always_eager  # unit tests: tasks run inline
