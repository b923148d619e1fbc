"""Agents log in through a real OpenID provider (deploy/dev-idp) over real HTTP.

The RP runs in Django's live server; a requests session plays the browser and
follows every redirect between the two. Tampering tests rewrite the provider's
back-channel answers to the RP, as an attacker on that path would.
"""

import base64
import logging
import time

import pytest
from django.contrib.sessions.models import Session

from accounts.agents import agent_deactivate
from accounts.grants import role_grant_invite
from accounts.models import Agent, RoleGrant
from accounts.oidc import provider
from audit.actor import Actor
from audit.models import AuditEvent
from audit.services import audit_chain_verify
from tests import oidc_helpers as h
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db(transaction=True)
JEANNE = "jeanne.martin@alpha.gouv.fr"
PAUL = "paul.durand@bravo.gouv.fr"
TOM = "tom.transfuge@alpha.gouv.fr"  # Alpha's address, Bravo's SIRET
LOU = "lou.agence@agence-bravo.fr"  # Bravo's SIRET, a domain no ministry declared


def imported(ministry, email, **fields):
    """An agent as a CSV import leaves them: known by email, no sub yet."""
    return AgentFactory(email=email, ministry=ministry, imported=True, **fields)


def refusals():
    return list(
        AuditEvent.objects.filter(action="auth.login_refused").values_list(
            "data__reason", flat=True
        )
    )


def assert_refused(browser, response, reason, status=403):
    """The refusal page says why, no session is left, and the refusal is audited."""
    assert response.status_code == status, response.text[:500]
    assert f'data-reason="{reason}"' in response.text
    assert "Connexion refusée" in response.text
    assert not browser.logged_in()
    assert refusals() == [reason]
    assert audit_chain_verify().intact


# --- Who gets in ---------------------------------------------------------------------------


def test_imported_agent_is_bound_at_first_login(rp):
    """An agent imported by email is bound to the IdP's sub and lands on the console."""
    agent = imported(rp.alpha, JEANNE)
    browser = rp.browser()
    response = browser.login(JEANNE)
    assert response.status_code == 200
    assert response.url.endswith("/console/")
    assert "Jeanne Martin" in response.text and "Ministère Alpha" in response.text
    agent.refresh_from_db()
    assert agent.sub == h.SUB[JEANNE]
    assert agent.organizational_unit == "Bureau des systèmes"
    assert list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True)) == [
        "agent.bind",
        "auth.login",
    ]
    assert AuditEvent.objects.get(action="auth.login").data == {
        "acr": "eidas1",
        "idp_id": "11111111-2222-3333-4444-555555555555",
    }


def test_bound_agent_is_updated_from_claims_and_keeps_its_sub(rp):
    """A known sub logs in; names follow the claims, the sub never changes."""
    imported(rp.alpha, JEANNE, sub=h.SUB[JEANNE], given_name="Old", usual_name="Name")
    browser = rp.browser()
    assert browser.login(JEANNE).url.endswith("/console/")
    agent = Agent.objects.get(email=JEANNE)
    assert (agent.given_name, agent.usual_name, agent.sub) == ("Jeanne", "Martin", h.SUB[JEANNE])
    assert Agent.objects.count() == 1


def test_jit_creates_the_agent_when_the_ministry_allows_it(rp):
    """Bravo allows creation at first login: Paul is created, bound, and logged in."""
    browser = rp.browser()
    response = browser.login(PAUL)
    assert response.url.endswith("/console/")
    agent = Agent.objects.get(email=PAUL)
    assert (agent.ministry, agent.sub, agent.is_active) == (rp.bravo, h.SUB[PAUL], True)
    assert AuditEvent.objects.filter(action="agent.create", object_id=str(agent.pk)).exists()


def test_admin_named_by_email_gets_the_role_at_first_login(rp, world_operator):
    """A pending admin grant becomes a real role when that person first logs in."""
    role_grant_invite(
        actor=Actor(user=world_operator, label="op"),
        email="cheffe@alpha.gouv.fr",
        role="ministry_admin",
        ministry=rp.alpha,
    )
    response = rp.browser().login("cheffe@alpha.gouv.fr")
    assert response.url.endswith("/console/")
    assert "Administrateur ministériel" in response.text
    agent = Agent.objects.get(email="cheffe@alpha.gouv.fr")
    assert RoleGrant.objects.filter(agent=agent, role="ministry_admin", ministry=rp.alpha).exists()


@pytest.fixture
def world_operator(db):
    from tests.factories import AgentFactory, grant

    return grant(AgentFactory(ministry=None, email="op@numerique.gouv.fr"), "operator")


@pytest.mark.parametrize(
    ("email", "setup", "reason"),
    [
        ("someone@inconnu.gouv.fr", None, "ministry_not_onboarded"),
        (JEANNE, None, "not_provisioned"),
        (JEANNE, "suspended", "ministry_suspended"),
        (JEANNE, "deactivated", "account_deactivated"),
        (PAUL, "no_seat", "no_free_seat"),
        (JEANNE, "min_acr", "acr_too_low"),
    ],
)
def test_everyone_else_is_refused_with_a_reason(rp, monkeypatch, settings, email, setup, reason):
    """Each refusal gives a French page saying why and what to do; nothing is created."""
    if setup == "suspended":
        imported(rp.alpha, JEANNE)
        rp.alpha.state = "suspended"
        rp.alpha.save()
    elif setup == "deactivated":
        agent = imported(rp.alpha, JEANNE)
        Agent.objects.filter(pk=agent.pk).update(
            is_active=False, deactivated_at="2026-01-01T00:00Z"
        )
    elif setup == "no_seat":
        rp.bravo.licence_pools.update(seats=0)
    elif setup == "min_acr":
        imported(rp.alpha, JEANNE)
        settings.OIDC_MIN_ACR = "eidas2"
    agents_before = set(Agent.objects.values_list("email", "sub", "is_active"))
    browser = rp.browser()
    assert_refused(browser, browser.login(email), reason)
    assert set(Agent.objects.values_list("email", "sub", "is_active")) == agents_before


# --- Claims naming two ministries ---------------------------------------------------------------


def agents_snapshot():
    return set(
        Agent.objects.values_list(
            "email", "ministry__code", "sub", "given_name", "usual_name", "organizational_unit"
        )
    )


@pytest.mark.parametrize("known", [False, True], ids=["jit", "imported"])
def test_first_login_whose_siret_and_email_name_two_ministries_is_refused(rp, known):
    """Alpha's address with Bravo's SIRET: neither created in Bravo (which allows
    creation at first login) nor bound in Alpha; a page names both ministries, and
    both ministries' trails hold the refusal."""
    if known:
        imported(rp.alpha, TOM)
    before = agents_snapshot()
    browser = rp.browser()
    response = browser.login(TOM)
    assert response.status_code == 403
    assert 'data-reason="ministry_conflict"' in response.text
    assert "votre adresse électronique appartient à une autre" in response.text
    assert "Votre établissement (SIRET) relève de : Ministère Bravo" in response.text
    assert "Votre adresse électronique relève de : Ministère Alpha" in response.text
    assert not browser.logged_in()
    assert agents_snapshot() == before
    events = AuditEvent.objects.filter(action="auth.login_refused")
    assert {e.ministry_id for e in events} == {rp.alpha.pk, rp.bravo.pk}
    for event in events:
        assert event.data["reason"] == "ministry_conflict"
        assert (event.data["siret_ministry"], event.data["domain_ministry"]) == ("bravo", "alpha")
        assert event.data["email"] == TOM
    assert not AuditEvent.objects.exclude(action="auth.login_refused").exists()
    assert audit_chain_verify().intact


def test_first_login_with_an_address_outside_the_ministrys_domains_is_refused(rp):
    """Bravo's SIRET alone never creates an agent whose address is not one of Bravo's
    domains (every other way of creating an agent refuses it too)."""
    browser = rp.browser()
    response = browser.login(LOU)
    assert_refused(browser, response, "email_domain_unknown")
    assert "n’est pas l’un des domaines" in response.text
    assert not Agent.objects.filter(email=LOU).exists()


@pytest.mark.parametrize(
    ("email", "names"),
    [(TOM, ("bravo", "alpha")), (PAUL, ("bravo", "bravo"))],
    ids=["siret", "siret-and-domain"],
)
def test_bound_agent_whose_claims_name_another_ministry_is_let_in_and_recorded(
    rp, caplog, email, names
):
    """An agent of Alpha, already bound, whose claims now name Bravo logs in to Alpha;
    the conflict is audited for both ministries and logged; names, unit and address
    are not taken from those claims."""
    caplog.set_level(logging.INFO)
    agent = imported(
        rp.alpha,
        "tom.ancien@alpha.gouv.fr" if email == PAUL else email,
        sub=h.SUB[email],
        given_name="Old",
        usual_name="Name",
        organizational_unit="Alpha unit",
    )
    before = agents_snapshot()
    browser = rp.browser()
    response = browser.login(email)
    assert response.url.endswith("/console/"), response.text[:300]
    assert "Ministère Alpha" in response.text
    assert agents_snapshot() == before
    agent.refresh_from_db()
    assert agent.ministry == rp.alpha and agent.last_login is not None
    events = AuditEvent.objects.filter(action="auth.ministry_conflict")
    assert {e.ministry_id for e in events} == {rp.alpha.pk, rp.bravo.pk}
    for event in events:
        assert event.object_id == str(agent.pk)
        assert event.data == {
            "siret_ministry": names[0],
            "domain_ministry": names[1],
            "agent_ministry": "alpha",
            "outcome": "let_in",
        }
    assert AuditEvent.objects.filter(action="auth.login", object_id=str(agent.pk)).count() == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"Agent {agent.pk} of ministry alpha logged in with claims naming another" in (
        "\n".join(warnings)
    )
    assert audit_chain_verify().intact


def test_bound_agent_whose_claims_agree_leaves_no_conflict(rp):
    """The usual login of a bound agent records no conflict."""
    imported(rp.alpha, JEANNE, sub=h.SUB[JEANNE])
    assert rp.browser().login(JEANNE).url.endswith("/console/")
    assert not AuditEvent.objects.filter(action="auth.ministry_conflict").exists()


def test_deactivation_ends_open_sessions_at_once(rp):
    """Once deactivated, an agent's open console session is refused on the next request."""
    agent = imported(rp.alpha, JEANNE)
    browser = rp.browser()
    browser.login(JEANNE)
    assert browser.logged_in()
    operator = Agent.objects.create_user("op@numerique.gouv.fr")
    operator.grants.create(role="operator")
    agent_deactivate(actor=Actor(user=operator, label="op"), agent=agent)
    assert not browser.logged_in()


# --- Logout ----------------------------------------------------------------------------------


def test_logout_ends_both_sessions_and_checks_the_state(rp):
    """Logout goes to the IdP with id_token_hint and state, and comes back verified."""
    imported(rp.alpha, JEANNE)
    browser = rp.browser()
    browser.login(JEANNE)
    id_token = Session.objects.get().get_decoded()["oidc_id_token"]
    page = browser.post_form("/console/deconnexion/")
    assert page.url.startswith(f"{rp.idp.issuer}/session/end?")
    for param in (f"id_token_hint={id_token}", "state=", "post_logout_redirect_uri="):
        assert param in page.url
    assert not browser.logged_in(), "the local session ends before the IdP answers"
    back = browser.confirm_idp_logout(page)
    assert back.url.endswith("/console/connexion/?logged_out=1"), back.url
    assert "Vous êtes déconnecté" in back.text
    assert AuditEvent.objects.filter(action="auth.logout").count() == 1
    # The IdP session is gone too: a new login asks for an account again.
    again = browser.get("/oidc/authenticate/")
    assert again.url.startswith(rp.idp.root) and "interaction" in again.url


def test_logout_with_a_wrong_state_is_not_confirmed(rp):
    """Coming back from the IdP with another state is flagged, not trusted."""
    response = rp.browser().get("/oidc/logout/callback/?state=forged")
    assert response.status_code == 400
    assert 'id="logout-unverified"' in response.text


def test_logout_works_when_the_provider_is_unreachable(rp, settings):
    """The local session ends even when the IdP cannot be reached."""
    imported(rp.alpha, JEANNE)
    browser = rp.browser()
    browser.login(JEANNE)
    settings.OIDC_OP_DISCOVERY_URL = "http://127.0.0.1:9/.well-known/openid-configuration"
    h.reset_provider_cache()
    response = browser.post_form("/console/deconnexion/")
    assert response.url.endswith("/console/connexion/")
    assert not browser.logged_in()


# --- Keys ------------------------------------------------------------------------------------


def test_key_rotation_is_followed(rp):
    """After the IdP rotates its signing key, the next login verifies with the new key,
    and the key the IdP dropped is forgotten."""
    imported(rp.alpha, JEANNE)
    assert rp.browser().login(JEANNE).url.endswith("/console/")
    old_kids = provider.provider_key_ids()
    kids = rp.idp.rotate_keys(drop_old=True)
    browser = rp.browser()
    response = browser.login(JEANNE)
    assert response.url.endswith("/console/"), response.text[:300]
    assert provider.provider_key_ids() == {kids[0]}
    assert old_kids.isdisjoint(provider.provider_key_ids())


@pytest.mark.parametrize("refresh", ["ttl", "unknown_kid"])
def test_a_key_the_provider_dropped_is_refused_after_a_refresh(rp, settings, refresh):
    """A key the IdP published, then dropped (say, leaked), stops being trusted once
    the keys are fetched again: when they are older than OIDC_JWKS_TTL_SECONDS, or
    when a token names a kid not seen yet (a rotation)."""
    imported(rp.alpha, JEANNE)
    rp.mitm.trust_attacker_key()  # the IdP lists the key...
    assert rp.browser().login(JEANNE).url.endswith("/console/")
    assert "attacker" in provider.provider_key_ids()
    rp.mitm.rules.clear()  # ...then no more
    if refresh == "ttl":
        settings.OIDC_JWKS_TTL_SECONDS = 1
        time.sleep(1.2)
    else:
        rp.idp.rotate_keys()
        assert rp.browser().login(JEANNE).url.endswith("/console/")
        assert "attacker" not in provider.provider_key_ids()
    fetches = rp.mitm.jwks_fetches()
    # Whoever holds the dropped key signs a token with it.
    rp.mitm.rewrite_tokens(h.reforge(rp.mitm, _claims()))
    browser = rp.browser()
    assert_refused(browser, browser.login(JEANNE), "unknown_key")
    assert "attacker" not in provider.provider_key_ids()
    # TTL: the stale keys were fetched again. Rotation: just refetched, the window
    # forbids another download for an unknown kid.
    assert rp.mitm.jwks_fetches() == fetches + (1 if refresh == "ttl" else 0)


def test_a_key_replaced_under_its_kid_is_picked_up(rp):
    """The IdP publishes a new key under the old kid: the signature fails with the cached
    key, the keys are fetched once more, and the login goes through."""
    imported(rp.alpha, JEANNE)
    assert rp.browser().login(JEANNE).url.endswith("/console/")
    kid = rp.idp.rotate_keys(same_kid=True)[0]
    assert kid in provider.provider_key_ids(), "the kid did not change"
    assert rp.mitm.jwks_fetches() == 1
    response = rp.browser().login(JEANNE)
    assert response.url.endswith("/console/"), response.text[:300]
    assert rp.mitm.jwks_fetches() == 2
    assert refusals() == []


def test_key_refetches_are_rate_limited_across_processes(rp, settings):
    """At most one unscheduled JWKS download per window, whichever process asks: a
    second replacement in the window fails until the window ends, then logins work."""
    window = 6
    settings.OIDC_JWKS_MIN_REFETCH_SECONDS = window
    imported(rp.alpha, JEANNE)
    assert rp.browser().login(JEANNE).url.endswith("/console/")
    rp.idp.rotate_keys(same_kid=True)
    started = time.monotonic()
    assert rp.browser().login(JEANNE).url.endswith("/console/")  # the window's refetch
    assert rp.mitm.jwks_fetches() == 2
    rp.idp.rotate_keys(same_kid=True)
    browser = rp.browser()
    assert_refused(browser, browser.login(JEANNE), "bad_signature")
    # Another process (its own memory, the same shared cache) takes the shared keys and
    # does not download them for a kid it does not know either.
    provider.provider_cache_clear(shared=False)
    for kid in ("unknown-1", "unknown-2", "unknown-3"):
        with pytest.raises(provider.LoginRefused) as refused:
            provider.signing_key(kid)
        assert refused.value.reason == "unknown_key"
    assert rp.mitm.jwks_fetches() == 2
    assert time.monotonic() - started < window, "too slow to test the window"
    time.sleep(window - (time.monotonic() - started) + 0.2)
    assert rp.browser().login(JEANNE).url.endswith("/console/")
    assert rp.mitm.jwks_fetches() == 3


# --- Discovery -------------------------------------------------------------------------------


def test_discovery_naming_another_issuer_is_refused(rp, caplog):
    """A discovery document whose issuer is not the configured one is not used: the agent
    is never sent to its endpoints, a page says so, and the log line names both issuers."""
    caplog.set_level(logging.INFO)
    imported(rp.alpha, JEANNE)

    def other_issuer(real, method, url, **kwargs):
        response = real(method, url, **kwargs)
        body = {**response.json(), "issuer": "https://evil.example/api/v2\nforged line"}
        return h.fake_response(response, json_body=body)

    rp.mitm.on(lambda m, u: u.endswith("/.well-known/openid-configuration"), other_issuer)
    browser = rp.browser()
    response = browser.login(JEANNE)
    assert_refused(browser, response, "provider_misconfigured", status=502)
    assert response.url.startswith(browser.base), "the agent was sent to the provider"
    assert rp.mitm.jwks_fetches() == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "accounts.oidc.provider"]
    assert lines == [
        "ProConnect discovery refused: its issuer 'https://evil.example/api/v2\\nforged line' "
        f"is not the configured issuer '{rp.idp.issuer}'"
    ]
    assert rp.idp.client_secret not in "\n".join(r.getMessage() for r in caplog.records)
    assert Agent.objects.get(email=JEANNE).sub is None


# --- Refusals on tampered answers ---------------------------------------------------------------


def _flip_signature(body):
    header, payload, signature = body["id_token"].split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[0] ^= 0xFF
    body["id_token"] = f"{header}.{payload}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}"


def _alg_none(body):
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    payload = body["id_token"].split(".")[1]
    header = b64(b'{"alg":"none","typ":"JWT"}')
    body["id_token"] = f"{header}.{payload}."


def _claims(**changes):
    def change(claims):
        claims.update(changes)

    return change


def _single_audience(**changes):
    """``aud`` as one string (this client), then ``changes``."""

    def change(claims):
        if isinstance(claims["aud"], list):
            claims["aud"] = claims["aud"][0]
        claims.update(changes)

    return change


TAMPERING = {
    "bad_signature": lambda mitm: mitm.rewrite_tokens(_flip_signature),
    "algorithm_refused": lambda mitm: mitm.rewrite_tokens(_alg_none),
    "wrong_issuer": lambda mitm: (
        mitm.trust_attacker_key(),
        mitm.rewrite_tokens(h.reforge(mitm, _claims(iss="https://evil.example/api/v2"))),
    )[-1],
    "wrong_audience": lambda mitm: (
        mitm.trust_attacker_key(),
        mitm.rewrite_tokens(h.reforge(mitm, _claims(aud="someone-else"))),
    )[-1],
    "token_expired": lambda mitm: (
        mitm.trust_attacker_key(),
        mitm.rewrite_tokens(h.reforge(mitm, _claims(exp=1_600_000_000, iat=1_599_999_000))),
    )[-1],
    "nonce_mismatch": lambda mitm: (
        mitm.trust_attacker_key(),
        mitm.rewrite_tokens(h.reforge(mitm, _claims(nonce="x" * 48))),
    )[-1],
    "unknown_key": lambda mitm: mitm.rewrite_tokens(h.reforge(mitm, _claims())),
    "single_audience_azp": lambda mitm: (
        mitm.trust_attacker_key(),
        mitm.rewrite_tokens(h.reforge(mitm, _single_audience(azp="another-client"))),
    )[-1],
    "userinfo_foreign_azp": lambda mitm: (
        mitm.trust_attacker_key(),
        mitm.rewrite_userinfo(
            lambda text: mitm.sign({**h.unverified(text), "azp": "another-client"})
        ),
    )[-1],
    "several_audiences": lambda mitm: (
        mitm.trust_attacker_key(),
        mitm.rewrite_tokens(h.reforge(mitm, lambda c: c.update(aud=[c["aud"], "another-client"]))),
    )[-1],
    "userinfo_sub_mismatch": lambda mitm: (
        mitm.trust_attacker_key(),
        mitm.rewrite_userinfo(lambda text: mitm.sign({**h.unverified(text), "sub": "another-sub"})),
    )[-1],
    "userinfo_bad_signature": lambda mitm: mitm.rewrite_userinfo(
        lambda text: text[:-4] + ("AAAA" if not text.endswith("AAAA") else "BBBB")
    ),
    "userinfo_wrong_audience": lambda mitm: (
        mitm.trust_attacker_key(),
        mitm.rewrite_userinfo(
            lambda text: mitm.sign({**h.unverified(text), "aud": "someone-else"})
        ),
    )[-1],
}
EXPECTED = {
    "userinfo_bad_signature": "bad_signature",
    "several_audiences": "wrong_audience",
    "single_audience_azp": "wrong_audience",
    "userinfo_foreign_azp": "wrong_audience",
    "userinfo_wrong_audience": "wrong_audience",
}


@pytest.mark.parametrize("attack", list(TAMPERING))
def test_tampered_answers_are_refused(rp, attack):
    """Every forged or altered token ends with no session and an audited refusal."""
    imported(rp.alpha, JEANNE)
    TAMPERING[attack](rp.mitm)
    browser = rp.browser()
    assert_refused(browser, browser.login(JEANNE), EXPECTED.get(attack, attack))
    assert Agent.objects.get(email=JEANNE).sub is None


def test_azp_naming_this_client_is_accepted(rp):
    """The azp check refuses other clients only: azp = this client with one audience
    goes through (the forged signature is trusted here on purpose)."""
    imported(rp.alpha, JEANNE)
    rp.mitm.trust_attacker_key()
    rp.mitm.rewrite_tokens(h.reforge(rp.mitm, _single_audience(azp=rp.idp.client_id)))
    assert rp.browser().login(JEANNE).url.endswith("/console/")


def test_state_mismatch_or_missing_is_refused(rp):
    """A callback whose state this browser never sent is refused (CSRF on login)."""
    browser = rp.browser()
    assert_refused(
        browser, browser.get("/oidc/callback/?code=abc&state=forged"), "state_mismatch", status=400
    )


def test_missing_state_is_refused(rp):
    """A callback without any state is refused too."""
    browser = rp.browser()
    assert_refused(browser, browser.get("/oidc/callback/?code=abc"), "state_mismatch", status=400)


def test_replayed_code_is_refused(rp):
    """A code used once is refused by the IdP when replayed under a fresh state."""
    imported(rp.alpha, JEANNE)
    captured = {}

    def capture(real, method, url, **kwargs):
        captured["code"] = kwargs["data"]["code"]
        return real(method, url, **kwargs)

    rp.mitm.on(lambda m, u: m == "POST" and u.endswith("/token"), capture)
    assert rp.browser().login(JEANNE).url.endswith("/console/")
    attacker = rp.browser()
    start = attacker.get("/oidc/authenticate/", allow_redirects=False)
    state = dict(p.split("=", 1) for p in start.headers["Location"].split("?")[1].split("&"))[
        "state"
    ]
    response = attacker.get(f"/oidc/callback/?code={captured['code']}&state={state}")
    assert response.status_code == 403
    assert 'data-reason="code_rejected"' in response.text
    assert "code_rejected" in refusals()


@pytest.mark.parametrize("stage", ["start", "token"])
def test_provider_unreachable_gives_a_clear_page(rp, settings, stage):
    """No 500 when the IdP is down: a French page says to try again later."""
    import requests

    imported(rp.alpha, JEANNE)
    browser = rp.browser()
    if stage == "start":
        settings.OIDC_OP_DISCOVERY_URL = "http://127.0.0.1:9/.well-known/openid-configuration"
        h.reset_provider_cache()
    else:

        def down(real, method, url, **kwargs):
            raise requests.ConnectionError("connection refused")

        rp.mitm.on(lambda m, u: m == "POST" and u.endswith("/token"), down)
    response = browser.login(JEANNE)
    assert_refused(browser, response, "provider_unreachable", status=503)
    assert "ProConnect est momentanément injoignable" in response.text


def test_no_token_or_secret_reaches_the_audit_trail(rp):
    """Audit events of a login hold no token, code or client secret."""
    imported(rp.alpha, JEANNE)
    browser = rp.browser()
    browser.login(JEANNE)
    id_token = Session.objects.get().get_decoded()["oidc_id_token"]
    trail = str(list(AuditEvent.objects.values()))
    for secret in (id_token, id_token.split(".")[2], rp.idp.client_secret):
        assert secret not in trail


# --- Silent re-authentication ------------------------------------------------------------------


def _expire_id_token():
    """Make the RP think the ID token is too old (what time would do)."""
    from django.contrib.sessions.backends.db import SessionStore

    session = Session.objects.get()
    store = SessionStore(session_key=session.session_key)
    store["oidc_id_token_expiration"] = 0
    store.save()


def test_expired_session_is_renewed_silently(rp):
    """With the IdP session still open, prompt=none renews the login without a page."""
    imported(rp.alpha, JEANNE)
    browser = rp.browser()
    browser.login(JEANNE)
    _expire_id_token()
    hops = []
    response = browser.http.get(
        f"{browser.base}/console/",
        timeout=20,
        hooks={"response": lambda r, **k: hops.append(r.url)},
    )
    assert any("prompt=none" in url for url in hops), hops
    assert response.url.endswith("/console/")
    assert "Jeanne Martin" in response.text
    assert AuditEvent.objects.filter(action="auth.login").count() == 2


def test_login_required_sends_the_agent_to_the_login_page(rp):
    """Without an IdP session, login_required ends the local one and says so."""
    imported(rp.alpha, JEANNE)
    browser = rp.browser()
    browser.login(JEANNE)
    _expire_id_token()
    for cookie in list(browser.http.cookies):
        if cookie.domain.startswith("127.0.0.1"):
            browser.http.cookies.clear(cookie.domain, cookie.path, cookie.name)
    response = browser.get("/console/")
    assert response.url.endswith("/console/connexion/?expired=1"), response.url
    assert "Votre session a expiré" in response.text
    assert not browser.logged_in()


def test_authorization_request_follows_proconnect_rules(rp):
    """state and nonce of 32+ characters, PKCE S256, acr_values=eidas1, the scopes."""
    from urllib.parse import parse_qs, urlsplit

    start = rp.browser().get("/oidc/authenticate/", allow_redirects=False)
    assert start.status_code == 302
    url = urlsplit(start.headers["Location"])
    params = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert start.headers["Location"].startswith(f"{rp.idp.issuer}/authorize?")
    assert params["response_type"] == "code"
    assert params["client_id"] == rp.idp.client_id
    assert len(params["state"]) >= 32 and len(params["nonce"]) >= 32
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["acr_values"] == "eidas1"
    assert params["scope"].split() == [
        "openid",
        "given_name",
        "usual_name",
        "email",
        "uid",
        "siret",
        "idp_id",
        "organizational_unit",
    ]
    assert params["redirect_uri"].endswith("/oidc/callback/")


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ("//evil.example/phish", "/console/"),
        ("https://evil.example/", "/console/"),
        ("/console/?page=2", "/console/?page=2"),
    ],
)
def test_login_only_returns_to_pages_of_this_site(rf, stored, expected):
    """The path a silent re-login interrupted is followed only if it is on this site."""
    from django.contrib.sessions.backends.signed_cookies import SessionStore

    from accounts.oidc.views import ProConnectCallbackView

    request = rf.get("/oidc/callback/")
    request.session = SessionStore()
    request.session["oidc_login_next"] = stored
    view = ProConnectCallbackView()
    view.request = request
    assert view.success_url == expected


def test_no_token_or_secret_reaches_the_logs(rp, caplog):
    """Log lines of a login, a refusal and a logout hold no code, token or client secret."""
    import logging

    caplog.set_level(logging.DEBUG)
    imported(rp.alpha, JEANNE)
    captured = {}

    def capture(real, method, url, **kwargs):
        captured["code"] = kwargs["data"]["code"]
        response = real(method, url, **kwargs)
        captured.update(response.json())
        return response

    rp.mitm.on(lambda m, u: m == "POST" and u.endswith("/token"), capture)
    browser = rp.browser()
    browser.login(JEANNE)
    browser.get("/oidc/callback/?code=forged-code&state=forged-state")
    browser.post_form("/console/deconnexion/")
    # The test's own HTTP client (urllib3) and Django's dev-server access log print
    # the callback URL, code included; they are not the service's logs. (A production
    # access log must log paths without their query string.)
    text = "\n".join(
        record.getMessage()
        for record in caplog.records
        if not record.name.startswith(("urllib3", "django.server"))
    )
    assert captured["access_token"] and captured["id_token"]
    assert "Bad Request: /oidc/callback/" in text, "the service's own log lines were captured"
    for secret in (
        captured["code"],
        captured["access_token"],
        captured["id_token"],
        captured["id_token"].split(".")[2],
        rp.idp.client_secret,
        "forged-code",
    ):
        assert secret not in text
