"""The identity provider goes down, or answers garbage, while agents log in.

A real dev IdP (deploy/dev-idp) is started for each test and stopped by it; the RP
runs in Django's live server. Garbage answers are injected on the RP's back channel
to the IdP, as a failing proxy in front of the provider would give them.
"""

import logging
import time
from urllib.parse import urljoin

import pytest
import requests

from audit.models import AuditEvent
from tests import oidc_helpers as h
from tests.factories import AgentFactory
from tests.oidc_fixtures import dev_idp_for, point_rp_at

pytestmark = pytest.mark.django_db(transaction=True)
JEANNE = "jeanne.martin@alpha.gouv.fr"


@pytest.fixture
def idp(live_server):
    """A dev IdP of this test's own, which the test may stop."""
    with dev_idp_for(live_server) as running:
        yield running


@pytest.fixture
def rp(idp, live_server, settings, monkeypatch):
    """The RP pointed at the IdP, with an interceptor on its calls to the IdP."""
    interceptor = point_rp_at(idp, settings, monkeypatch)
    h.make_ministries()
    yield interceptor
    h.reset_provider_cache()


def to_callback(browser, live_server):
    """Follow the login from the ProConnect button to the IdP and back, stopping just
    before the callback is requested; return the callback's URL (with the code)."""
    url = urljoin(browser.base, f"/oidc/authenticate/?login_hint={JEANNE}")
    for _ in range(15):
        response = browser.http.get(url, allow_redirects=False, timeout=20)
        assert response.status_code in (302, 303), (url, response.status_code)
        url = urljoin(url, response.headers["Location"])
        if url.startswith(f"{live_server.url}/oidc/callback/"):
            return url
    raise AssertionError("the IdP never sent the browser back")


def assert_retry_page(response):
    """A 503 in French saying ProConnect cannot be reached, with a retry link."""
    assert response.status_code == 503, response.text[:500]
    assert response.headers["Retry-After"].isdigit()
    assert "ProConnect est momentanément injoignable" in response.text
    assert 'href="/oidc/authenticate/"' in response.text and "Réessayer" in response.text
    assert "Traceback" not in response.text


def test_login_button_with_the_provider_stopped(rp, idp, live_server, settings, caplog):
    """The identity provider down: agents get a clear page, no 500 (the ProConnect
    button, once the provider has stopped after its metadata was cached)."""
    browser = h.Browser(live_server.url)
    first = browser.get("/oidc/authenticate/", allow_redirects=False)
    assert first.status_code == 302 and first.headers["Location"].startswith(idp.issuer)
    idp.stop()
    # After this much silence the RP asks the provider again (5 s by default).
    settings.OIDC_PROVIDER_CHECK_SECONDS = 0.2
    time.sleep(0.3)
    caplog.set_level(logging.WARNING, logger="accounts.oidc.views")
    response = browser.get("/oidc/authenticate/", allow_redirects=False)
    assert_retry_page(response)
    assert "ProConnect unreachable at authorization: ConnectionError" in caplog.text
    assert AuditEvent.objects.filter(
        action="auth.login_refused", data__reason="provider_unreachable"
    ).exists()


def test_callback_with_the_provider_stopped(rp, idp, live_server, caplog):
    """The identity provider down: agents get a clear page, no 500 (at the callback,
    the provider gone between its login page and the code exchange; the next click on
    the button is answered at once, without waiting for the check period)."""
    browser = h.Browser(live_server.url)
    callback = to_callback(browser, live_server)
    idp.stop()
    caplog.set_level(logging.WARNING, logger="accounts.oidc.views")
    response = browser.http.get(callback, timeout=20)
    assert_retry_page(response)
    assert "ProConnect unreachable at callback: ConnectionError" in caplog.text
    code = callback.split("code=")[1].split("&")[0]
    assert code not in caplog.text and idp.client_secret not in caplog.text
    again = browser.get("/oidc/authenticate/", allow_redirects=False)
    assert_retry_page(again)
    assert not browser.logged_in()


GARBAGE = {
    "500 html": (500, "text/html", "<html><body>Internal Server Error</body></html>"),
    "502 empty": (502, "text/plain", ""),
    "503 json": (503, "application/json", '{"error": "server_error"}'),
    "429": (429, "text/plain", "Too Many Requests"),
    "200 html": (200, "text/html", "<html><body>Maintenance en cours</body></html>"),
}


@pytest.mark.parametrize("answer", list(GARBAGE), ids=list(GARBAGE))
def test_token_endpoint_answering_garbage(rp, idp, live_server, caplog, answer):
    """The identity provider down: agents get a clear page, no 500 (its token endpoint
    answering an error page or garbage at callback time)."""
    status, content_type, text = GARBAGE[answer]

    def garbage(real, method, url, **kwargs):
        response = requests.Response()
        response.status_code = status
        response.headers["Content-Type"] = content_type
        response._content = text.encode()
        response.url = url
        return response

    rp.on(lambda m, u: m == "POST" and u.endswith("/token"), garbage)
    browser = h.Browser(live_server.url)
    callback = to_callback(browser, live_server)
    caplog.set_level(logging.WARNING, logger="accounts.oidc.views")
    response = browser.http.get(callback, timeout=20)
    assert_retry_page(response)
    assert "ProConnect unreachable at callback: ProviderUnavailable" in caplog.text
    assert idp.client_secret not in caplog.text
    assert not browser.logged_in()


def test_provider_back_after_an_outage(rp, idp, live_server):
    """Once the provider answers again, the same button logs the agent in."""
    from accounts.models import Ministry

    AgentFactory(email=JEANNE, ministry=Ministry.objects.get(code="alpha"), imported=True)
    failing = {"on": True}

    def flaky(real, method, url, **kwargs):
        if failing["on"]:
            raise requests.ConnectionError("connection refused")
        return real(method, url, **kwargs)

    rp.on(lambda m, u: True, flaky)
    browser = h.Browser(live_server.url)
    assert_retry_page(browser.get("/oidc/authenticate/", allow_redirects=False))
    failing["on"] = False
    response = browser.login(JEANNE)
    assert response.status_code == 200 and response.url.endswith("/console/")
    assert browser.logged_in()
