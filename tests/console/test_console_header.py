"""The console's header: a main navigation that follows the caller's role, skip links,
and, on a phone (375 px), DSFR's "Menu" button opening a modal that holds the language
switch, the caller's name and the logout button."""

import os
import shutil

import pytest
from django.test import Client

from tests.support.browser import ARGS, CHROMIUM

pytestmark = pytest.mark.django_db


def nav_of(agent) -> str:
    client = Client()
    client.force_login(agent)
    page = client.get("/console/").content.decode()
    return page.split('id="console-nav"')[1].split("</nav>")[0]


def test_the_main_navigation_follows_the_role(world):
    agent = nav_of(world.agent_a)
    assert "Mes réunions" in agent
    assert "Tableau de bord" not in agent and "Imports" not in agent
    admin = nav_of(world.admin_a)
    assert "Imports" in admin and "Tableau de bord" in admin
    assert "/console/noeuds/" not in admin
    assert "/console/noeuds/" in nav_of(world.operator)


def test_anonymous_pages_have_no_navigation_but_skip_links():
    page = Client().get("/console/connexion/").content.decode()
    assert 'id="console-nav"' not in page
    assert 'class="fr-skiplinks"' in page and 'href="#content"' in page
    assert 'id="content"' in page


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    not shutil.which(CHROMIUM) and os.environ.get("CI") != "true",
    reason="Debian's chromium is not installed (make test installs it)",
)
def test_an_agent_logs_out_from_a_phone(world, live_server, monkeypatch):
    """At 375 px the header tools are hidden: the Menu button opens them, logout works,
    and no page throws (DSFR's header script used to fail on a missing menu)."""
    from playwright.sync_api import sync_playwright

    client = Client()
    client.force_login(world.agent_a)
    session = client.cookies["sessionid"].value
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(locale="fr-FR", viewport={"width": 375, "height": 740})
            context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
            page = context.new_page()
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{live_server.url}/console/")
            page.wait_for_load_state("load")
            desktop_logout = page.locator(
                ".fr-header__tools-links button", has_text="Se déconnecter"
            )
            assert not desktop_logout.is_visible()
            page.click("#console-menu-button")
            logout = page.locator("#console-menu button", has_text="Se déconnecter")
            logout.wait_for(state="visible")
            assert page.locator("#console-menu", has_text="Mes réunions").is_visible()
            logout.click()
            page.wait_for_load_state("load")
            after = page.url
        finally:
            browser.close()
    assert errors == []
    assert "/console/deconnexion/" not in after
    assert Client(cookies={"sessionid": session}).get("/console/").status_code == 302
