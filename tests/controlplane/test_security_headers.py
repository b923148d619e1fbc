"""Security headers: a strict Content Security Policy on every answer (and no console
page breaking it in a real browser), and, with production settings, HSTS, Secure and
HttpOnly cookies and a Referrer-Policy."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.security import content_security_policy
from tests.support.browser import ARGS, CHROMIUM
from tests.support.clients import client_as
from tests.support.production_env import PRODUCTION_ENV
from tests.support.skips import requires_redis
from tests.usage_scenes import two_weeks_of_usage

ROOT = Path(__file__).resolve().parents[2]


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/console/", "/healthz", "/api/v1/ministries/", "/api/v1/docs/"])
def test_every_answer_has_a_strict_policy(client, world, path):
    """Scripts and styles from this site only: no inline code, eval, plugin or framing."""
    response = client_as(world.operator).get(path)
    assert response.status_code == 200
    policy = directives(response["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert not [v for values in policy.values() for v in values if "unsafe" in v]
    assert "camera=()" in response["Permissions-Policy"]


@pytest.mark.django_db
def test_debug_error_pages_keep_their_inline_styles(client, settings):
    """With DEBUG on, Django's technical 404 page (styled inline) gets no policy; the
    service's own pages keep theirs."""
    settings.DEBUG = True
    assert "Content-Security-Policy" not in client.get("/no/such/page/")
    assert "Content-Security-Policy" in client.get("/healthz")
    settings.DEBUG = False
    assert "Content-Security-Policy" in client.get("/no/such/page/")


def test_forms_may_post_to_the_identity_provider_only(settings):
    """Logout posts here and is redirected to the provider: form-action allows exactly
    this site and the provider's origin (plus configured extras)."""
    settings.OIDC_OP_DISCOVERY_URL = (
        "https://auth.agentconnect.gouv.fr/api/v2/.well-known/openid-configuration"
    )
    assert directives(content_security_policy())["form-action"] == [
        "'self'",
        "https://auth.agentconnect.gouv.fr",
    ]
    settings.OIDC_OP_DISCOVERY_URL = ""
    settings.CSP_FORM_ACTION_EXTRA = ["https://forms.example.gouv.fr"]
    assert directives(content_security_policy())["form-action"] == [
        "'self'",
        "https://forms.example.gouv.fr",
    ]


@pytest.mark.django_db
def test_api_docs_load_their_script_from_a_url(client):
    """Swagger UI's page has no inline script or style; its script is a same-site URL."""
    page = client.get("/api/v1/docs/").content.decode()
    assert "<style" not in page
    assert "<script>" not in page.replace(" ", "")
    script = client.get("/api/v1/docs/?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()


PRODUCTION_PROBE = """
import json
import django
django.setup()
from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.test import Client, RequestFactory

def view(request):
    request.session["probe"] = 1
    return HttpResponse()

session = SessionMiddleware(view)(RequestFactory().get("/", secure=True))
client = Client(HTTP_HOST="visio.numerique.gouv.fr")
page = client.get("/console/connexion/", secure=True)
plain = client.get("/console/connexion/")
language = client.post("/i18n/setlang/", {"language": "en"}, secure=True)

def flags(cookie):
    return {"secure": bool(cookie["secure"]), "httponly": bool(cookie["httponly"]),
            "samesite": cookie["samesite"]}

print(json.dumps({
    "status": page.status_code,
    "hsts": page.get("Strict-Transport-Security"),
    "referrer": page.get("Referrer-Policy"),
    "nosniff": page.get("X-Content-Type-Options"),
    "frame": page.get("X-Frame-Options"),
    "coop": page.get("Cross-Origin-Opener-Policy"),
    "csp": page.get("Content-Security-Policy"),
    "plain": [plain.status_code, plain.get("Location")],
    "csrf": flags(page.cookies["csrftoken"]),
    "session": flags(session.cookies[settings.SESSION_COOKIE_NAME]),
    "language": flags(language.cookies[settings.LANGUAGE_COOKIE_NAME]),
}))
"""


@requires_redis
def test_production_settings_send_hsts_secure_cookies_and_referrer_policy():
    """With DEBUG off and nothing else said (as in production): HSTS with subdomains
    and preload, every cookie Secure and HttpOnly, a same-origin Referrer-Policy,
    plain HTTP redirected to HTTPS."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "DEBUG"}
    }
    env.update(
        PRODUCTION_ENV,
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        CACHE_URL=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15"),
        STATICFILES_BACKEND="django.contrib.staticfiles.storage.StaticFilesStorage",
        PYTHONPATH=str(ROOT),
    )
    result = subprocess.run(
        [sys.executable, "-c", PRODUCTION_PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["status"] == 200
    assert seen["hsts"] == "max-age=31536000; includeSubDomains; preload"
    assert seen["referrer"] == "same-origin"
    assert (seen["nosniff"], seen["frame"], seen["coop"]) == ("nosniff", "DENY", "same-origin")
    assert "script-src 'self'" in seen["csp"]
    assert seen["plain"] == [301, "https://visio.numerique.gouv.fr/console/connexion/"]
    for cookie in ("csrf", "session", "language"):
        assert seen[cookie] == {"secure": True, "httponly": True, "samesite": "Lax"}, cookie


# -- In a real browser --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    not shutil.which(CHROMIUM) and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed (make test installs it)",
)
def test_console_pages_break_no_policy_in_chromium(world, live_server, monkeypatch):
    """Chromium reports no Content Security Policy violation on the main console pages,
    the API docs and the login page, and DSFR's and the console's scripts still run."""
    from playwright.sync_api import sync_playwright

    two_weeks_of_usage(world)
    pages = [
        "/console/connexion/",
        "/console/",
        "/console/imports/",
        "/console/ministeres/alpha/",
        "/console/reunions/",
        "/console/noeuds/",
        "/console/tableau-de-bord/",
        "/console/exports/",
        "/console/rapports/",
        "/console/mes-donnees/",
        "/console/confidentialite/",
        "/api/v1/docs/",
    ]
    session = client_as(world.operator).cookies["sessionid"].value
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    violations, loaded = [], {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(locale="fr-FR")
            context.add_init_script(
                "window.__csp = []; document.addEventListener('securitypolicyviolation', "
                "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            page = context.new_page()
            page.on(
                "console",
                lambda m: (
                    violations.append(f"{page.url}: {m.text}")
                    if "Content Security Policy" in m.text
                    else None
                ),
            )
            for path in pages:
                if path == "/console/":
                    context.add_cookies(
                        [{"name": "sessionid", "value": session, "url": live_server.url}]
                    )
                page.goto(f"{live_server.url}{path}")
                page.wait_for_load_state("networkidle")
                loaded[path] = page.evaluate("() => typeof window.dsfr")
                violations += [f"{path}: {v}" for v in page.evaluate("() => window.__csp")]
            page.goto(f"{live_server.url}/console/tableau-de-bord/")
            page.wait_for_selector("#minutes-chart[data-drawn=yes]")
            page.goto(f"{live_server.url}/api/v1/docs/")
            page.wait_for_selector(".swagger-ui .info")
        finally:
            browser.close()
    assert not violations, violations
    assert loaded["/console/"] != "undefined"  # DSFR's module ran under the policy
