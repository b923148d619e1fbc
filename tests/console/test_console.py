"""The console: French first, one home per role, nothing loaded from another host."""

import re

import pytest
from django.conf import settings as django_settings
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


def page(client, path="/console/"):
    response = client.get(path)
    assert response.status_code == 200
    return response.content.decode()


def test_login_page_speaks_french_by_default(client):
    """With no language preference, the console is in French."""
    html = page(client, "/console/connexion/")
    assert '<html lang="fr"' in html
    assert "Se connecter" in html
    assert "ProConnect" in html


def test_english_is_available(client):
    """An agent may switch the console to English."""
    client.post("/i18n/setlang/", {"language": "en", "next": "/console/connexion/"})
    html = page(client, "/console/connexion/")
    assert '<html lang="en"' in html
    assert "Log in" in html


def test_demo_login_does_not_exist_outside_the_demo(client, world):
    """With DEBUG off no account list is shown and a posted email logs nobody in."""
    assert not django_settings.DEMO_LOGIN
    html = page(client, "/console/connexion/")
    assert world.operator.email not in html
    client.post("/console/connexion/", {"email": world.operator.email})
    assert client.get("/console/").status_code == 302


def test_demo_login_lists_accounts_and_logs_in(client, world, settings):
    """In the demo, picking an account opens its console home."""
    settings.DEMO_LOGIN = True
    assert world.admin_a.email in page(client, "/console/connexion/")
    response = client.post("/console/connexion/", {"email": world.admin_a.email})
    assert response.status_code == 302
    html = page(client)
    assert world.admin_a.given_name in html
    assert world.a.name in html


def test_anonymous_is_sent_to_login(client):
    """The console needs a session."""
    response = client.get("/console/")
    assert response.status_code == 302
    assert response["Location"].startswith("/console/connexion/")


def test_operator_home_shows_every_ministry(client, world):
    """Operators see the rollout states and all ministries."""
    client.force_login(world.operator)
    html = page(client)
    assert "Opérateur de la plateforme" in html
    assert world.a.name in html and world.b.name in html


def test_admin_home_shows_only_their_ministry(client, world):
    """A ministry admin's home lists their ministry, never another."""
    client.force_login(world.admin_a)
    html = page(client)
    table = html[html.index('id="console-ministries"') :]
    assert world.a.name in table
    assert world.b.name not in html


def test_agent_home_shows_their_profile_only(client, world):
    """A plain agent sees their own name and ministry, no ministry table."""
    client.force_login(world.agent_a)
    html = page(client)
    assert world.agent_a.email in html
    assert world.a.name in html
    assert 'id="console-ministries"' not in html
    assert world.b.name not in html


def test_logout_ends_the_session(client, world):
    """Logging out is a POST that ends the session."""
    client.force_login(world.agent_a)
    client.post("/console/deconnexion/")
    assert client.get("/console/").status_code == 302


@pytest.mark.parametrize("path", ["/console/connexion/", "/console/"])
def test_pages_load_nothing_from_another_host(client, world, path):
    """Every stylesheet, script and image comes from this app's own static files."""
    if path == "/console/":
        client.force_login(world.operator)
    html = page(client, path)
    assets = re.findall(r'<(?:link|script|img)[^>]+(?:href|src)="([^"]+)"', html)
    assert any(a.endswith(".css") for a in assets)
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        assert asset.startswith(django_settings.STATIC_URL), asset
        assert finders.find(asset.removeprefix(django_settings.STATIC_URL)), asset
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html), "no remote CSS url()"


def test_browser_language_does_not_override_french(client):
    """An English-speaking browser still gets French until the agent picks English."""
    html = client.get("/console/connexion/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
    assert '<html lang="fr"' in html.content.decode()


def test_admin_home_shows_the_onboarding_checklist(client, world):
    """Admins see their ministry's steps, done or to do; other ministries' are not shown."""
    client.force_login(world.admin_a)
    html = page(client)
    block = html[html.index('id="checklist-alpha"') :]
    block = block[: block.index("</ul>")]
    assert block.count('data-done="yes"') == 5  # domains, SIRETs, admin, seats, agents
    assert block.count('data-done="no"') == 1  # no meeting yet
    assert 'id="checklist-bravo"' not in html
