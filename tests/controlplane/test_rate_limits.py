"""Rate limits: login starts and refused callbacks per client address, token issues
per caller, SCIM per directory token. Beyond a limit: 429 with Retry-After, in each
edge's own format; another client, caller or ministry is not affected."""

import json

import pytest
from django.test import Client

from accounts.models import ApiToken
from accounts.oidc import provider
from audit.actor import Actor
from audit.models import AuditEvent
from controlplane.ratelimit import Rate, RateLimited, rate_limit_hit
from scim.tokens import directory_token_issue
from tests.support.clients import client_as

pytestmark = pytest.mark.django_db


# -- The counter --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("30/m", Rate(30, 60)),
        ("1200/5m", Rate(1200, 300)),
        ("20/h", Rate(20, 3600)),
        ("0/m", Rate(0, 60)),
        (" 7 / 2s ", Rate(7, 2)),
        ("1/d", Rate(1, 86400)),
    ],
)
def test_rates_are_read_from_settings_text(text, rate):
    assert Rate.parse(text) == rate


@pytest.mark.parametrize("text", ["", "30", "30/x", "-1/m", "a/m", "3/0m", "30/m/h"])
def test_bad_rates_are_refused_with_their_name(text):
    with pytest.raises(ValueError, match="RATE_LIMIT_X"):
        Rate.parse(text, name="RATE_LIMIT_X")


def test_a_fixed_window_refuses_beyond_its_count_until_it_ends():
    """Three per minute: the fourth in the window is refused with the seconds left;
    another key is counted apart; the next window starts again; 0 means no limit."""
    rate, start = Rate(3, 60), 6000.0  # the start of a window
    for second in range(3):
        rate_limit_hit("t", key="a", rate=rate, now=start + second)
    with pytest.raises(RateLimited) as refused:
        rate_limit_hit("t", key="a", rate=rate, now=start + 45.2)
    assert refused.value.retry_after == 15
    rate_limit_hit("t", key="b", rate=rate, now=start + 46)
    rate_limit_hit("t", key="a", rate=rate, now=start + 60)
    for _ in range(10):
        rate_limit_hit("t", key="c", rate=Rate(0, 60), now=start)


def test_a_broken_cache_lets_requests_through(monkeypatch):
    """A limit never takes a door down: when the cache fails, the request passes."""
    from django.core.cache import cache

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "add", broken)
    for _ in range(5):
        rate_limit_hit("t", key="a", rate=Rate(1, 60))


# -- Login -------------------------------------------------------------------------------


@pytest.fixture
def oidc(settings, monkeypatch):
    """Login enabled against a provider whose metadata is known and that answers (no
    network needed)."""
    settings.OIDC_ENABLED = True
    settings.OIDC_RP_CLIENT_ID = "visio"
    monkeypatch.setattr(provider, "provider_check", lambda: None)
    monkeypatch.setattr(
        provider,
        "provider_metadata",
        lambda: {"authorization_endpoint": "https://idp.example.gouv.fr/authorize"},
    )
    return settings


def test_login_starts_are_limited_per_address_with_a_french_page(client, oidc):
    """The third login start from one address in the window gets the French 429 page
    with Retry-After; another address still goes to the provider."""
    oidc.RATE_LIMIT_LOGIN = Rate(2, 60)
    for _ in range(2):
        response = client.get("/oidc/authenticate/", REMOTE_ADDR="192.0.2.10")
        assert response.status_code == 302
        assert response["Location"].startswith("https://idp.example.gouv.fr/authorize?")
    refused = client.get("/oidc/authenticate/", REMOTE_ADDR="192.0.2.10")
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    page = refused.content.decode()
    assert "Trop de tentatives" in page and 'id="rate-limited"' in page
    other = client.get("/oidc/authenticate/", REMOTE_ADDR="192.0.2.11")
    assert other.status_code == 302


def test_refused_callbacks_close_the_callback_to_that_address(client, oidc):
    """Forged callbacks (no known state) are refused and audited up to the limit; then
    that address gets 429 without any audit write, and another address is unaffected."""
    oidc.RATE_LIMIT_LOGIN_FAILURES = Rate(3, 60)
    forged = {"code": "c", "state": "s"}
    for _ in range(3):
        assert client.get("/oidc/callback/", forged, REMOTE_ADDR="192.0.2.20").status_code == 400
    audited = AuditEvent.objects.filter(action="auth.login_refused").count()
    assert audited == 3
    blocked = client.get("/oidc/callback/", forged, REMOTE_ADDR="192.0.2.20")
    assert blocked.status_code == 429 and int(blocked["Retry-After"]) >= 1
    assert AuditEvent.objects.filter(action="auth.login_refused").count() == audited
    other = client.get("/oidc/callback/", forged, REMOTE_ADDR="192.0.2.21")
    assert other.status_code == 400


def test_login_limits_follow_the_balancer_address_when_trusted(client, oidc):
    """Behind the load balancer, the client address is X-Forwarded-For's last entry:
    two clients behind one balancer are counted apart."""
    oidc.RATE_LIMIT_LOGIN = Rate(1, 60)
    oidc.TRUST_X_FORWARDED_FOR = True
    first = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.1"}
    second = {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.2"}
    assert client.get("/oidc/authenticate/", **first).status_code == 302
    assert client.get("/oidc/authenticate/", **first).status_code == 429
    assert client.get("/oidc/authenticate/", **second).status_code == 302


# -- API and directory tokens ---------------------------------------------------------------


def test_api_token_issues_are_limited_per_caller(world, settings):
    """An admin's third token in the window: 429, DRF's body, Retry-After, no token made;
    the other ministry's admin still creates theirs; listing is never counted."""
    settings.RATE_LIMIT_TOKENS = Rate(2, 3600)
    admin_a = client_as(world.admin_a)
    body = {"ministry": "alpha", "role": "auditor", "name": "n"}
    for _ in range(2):
        assert admin_a.post("/api/v1/api-tokens/", body, format="json").status_code == 201
    refused = admin_a.post("/api/v1/api-tokens/", body, format="json")
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 3600
    assert "throttled" in refused.json()["detail"]
    assert ApiToken.objects.filter(ministry=world.a).count() == 2
    for _ in range(3):
        assert admin_a.get("/api/v1/api-tokens/").status_code == 200
    other = client_as(world.admin_b).post(
        "/api/v1/api-tokens/", {**body, "ministry": "bravo"}, format="json"
    )
    assert other.status_code == 201


def test_directory_token_issues_are_limited_per_caller(world, settings):
    """Issuing directory tokens in a loop stops at the limit; another admin is unaffected."""
    settings.RATE_LIMIT_TOKENS = Rate(1, 3600)
    admin_a = client_as(world.admin_a)
    assert admin_a.post("/api/v1/directory-tokens/", {"ministry": "alpha"}).status_code == 201
    refused = admin_a.post("/api/v1/directory-tokens/", {"ministry": "alpha"})
    assert refused.status_code == 429 and "Retry-After" in refused
    other = client_as(world.admin_b).post("/api/v1/directory-tokens/", {"ministry": "bravo"})
    assert other.status_code == 201


# -- SCIM ----------------------------------------------------------------------------------


def scim_client(ministry) -> Client:
    _, clear = directory_token_issue(actor=Actor.system("tests"), ministry=ministry)
    return Client(HTTP_AUTHORIZATION=f"Bearer {clear}")


def test_scim_is_limited_per_directory_token_with_a_scim_error(world, settings):
    """Beyond the limit a directory gets RFC 7644's error body (status "429", no
    scimType) and Retry-After; another ministry's directory keeps syncing."""
    settings.RATE_LIMIT_SCIM = Rate(3, 60)
    scim_a, scim_b = scim_client(world.a), scim_client(world.b)
    for _ in range(3):
        assert scim_a.get("/scim/v2/Users").status_code == 200
    refused = scim_a.get("/scim/v2/Users")
    assert refused.status_code == 429
    assert refused["Content-Type"] == "application/scim+json"
    assert 1 <= int(refused["Retry-After"]) <= 60
    body = json.loads(refused.content)
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == "429" and "scimType" not in body
    assert scim_b.get("/scim/v2/Users").status_code == 200


def test_scim_without_a_valid_token_is_limited_per_address(
    world, settings, django_assert_num_queries
):
    """Requests without a bearer, or with one that does not authenticate (made up,
    malformed), all count against their address: inventing tokens buys no bucket,
    and past the limit costs no query. A token that authenticated keeps its own."""
    settings.RATE_LIMIT_SCIM_FAILURES = Rate(2, 60)
    directory = scim_client(world.a)
    assert directory.get("/scim/v2/Users", REMOTE_ADDR="192.0.2.30").status_code == 200
    anonymous = Client()
    assert anonymous.get("/scim/v2/Users", REMOTE_ADDR="192.0.2.30").status_code == 401
    made_up = Client(HTTP_AUTHORIZATION="Bearer scim_made-up-value")
    assert made_up.get("/scim/v2/Users", REMOTE_ADDR="192.0.2.30").status_code == 401
    for value in ("scim_another-made-up-value", "x" * 500, "scim_\u00e9"):
        flood = Client(HTTP_AUTHORIZATION=f"Bearer {value}")
        with django_assert_num_queries(0):
            refused = flood.get("/scim/v2/Users", REMOTE_ADDR="192.0.2.30")
        assert refused.status_code == 429
    assert anonymous.get("/scim/v2/Users", REMOTE_ADDR="192.0.2.31").status_code == 401
    assert directory.get("/scim/v2/Users", REMOTE_ADDR="192.0.2.30").status_code == 200
