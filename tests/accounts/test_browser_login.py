"""A real browser (Debian's Chromium, driven by Playwright) logs in through the IdP's
login page and lands on the console home showing the agent's name and ministry."""

import os
import shutil

import pytest

from accounts.models import Agent
from tests.factories import AgentFactory
from tests.support.browser import ARGS, CHROMIUM

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not shutil.which(CHROMIUM) and os.environ.get("CI") != "true",
        reason="Debian's chromium is not installed (make test installs it)",
    ),
]


def test_agent_logs_in_through_the_provider_page(rp, live_server, monkeypatch, tmp_path):
    """Click ProConnect, pick the account on the IdP's page, see one's name and ministry."""
    from playwright.sync_api import sync_playwright

    agent = AgentFactory(email="jeanne.martin@alpha.gouv.fr", ministry=rp.alpha, imported=True)
    # Playwright's sync API runs an event loop in this thread; the live server, in its
    # own thread, does the database work.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(locale="fr-FR")
            page.goto(f"{live_server.url}/console/connexion/")
            page.click("#proconnect-login")
            page.wait_for_url(f"{rp.idp.root}/**")
            page.get_by_role("button", name="Jeanne").click()
            page.wait_for_url(f"{live_server.url}/console/")
            page.screenshot(path=str(tmp_path / "console-home.png"), full_page=True)
            heading = page.locator("h1").inner_text()
            ministry = page.locator("#console-ministry").inner_text()
            user = page.locator("#console-user").inner_text()
        finally:
            browser.close()
    assert heading == "Bonjour Jeanne Martin"
    assert ministry.startswith("Ministère Alpha")
    assert user == "Jeanne Martin"
    assert Agent.objects.get(pk=agent.pk).sub is not None
