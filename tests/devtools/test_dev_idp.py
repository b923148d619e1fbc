"""The development identity provider (deploy/dev-idp): a ProConnect look-alike.

The ``dev_idp`` fixture starts it once per session on a free port; the tests
check what a relying party counts on: discovery, the code flow with PKCE,
signed ID token and userinfo, key rotation, prompt=none and logout.
"""

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pytest
import requests

from tests.idp import DevIdp, running_dev_idp


@pytest.fixture(scope="session")
def dev_idp():
    """The dev IdP with one client whose redirect URI nothing listens on."""
    with running_dev_idp(
        redirect_uri="http://127.0.0.1:9/oidc/callback/",
        post_logout_redirect_uri="http://127.0.0.1:9/logged-out/",
    ) as idp:
        yield idp


def _follow(session: requests.Session, url: str, stop_at: str) -> requests.Response:
    """Follow redirects by hand until one points at ``stop_at`` (the RP, which is not there)."""
    response = session.get(url, allow_redirects=False, timeout=10)
    for _ in range(10):
        location = response.headers.get("Location")
        if response.status_code not in (302, 303) or not location:
            return response
        location = urljoin(response.url, location)
        if location.startswith(stop_at):
            return response
        response = session.get(location, allow_redirects=False, timeout=10)
    raise AssertionError("too many redirects")


def _callback_params(response: requests.Response) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["Location"]).query).items()}


def _authorize_url(idp: DevIdp, **params) -> str:
    query = {
        "response_type": "code",
        "client_id": idp.client_id,
        "redirect_uri": idp.redirect_uri,
        "scope": "openid given_name usual_name email uid siret idp_id organizational_unit",
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(32),
        "acr_values": "eidas1",
        **params,
    }
    return (
        requests.Request("GET", idp.metadata()["authorization_endpoint"], params=query)
        .prepare()
        .url
    )


def _login(idp: DevIdp, email: str, session: requests.Session | None = None) -> dict:
    """A headless code flow with PKCE; returns the nonce, the session and the token response."""
    session = session or requests.Session()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    nonce, state = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    url = _authorize_url(
        idp,
        login_hint=email,
        nonce=nonce,
        state=state,
        code_challenge=challenge.decode(),
        code_challenge_method="S256",
    )
    callback = _callback_params(_follow(session, url, idp.redirect_uri))
    assert callback["state"] == state
    assert callback["iss"] == idp.issuer
    token = requests.post(
        idp.metadata()["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": callback["code"],
            "redirect_uri": idp.redirect_uri,
            "client_id": idp.client_id,
            "client_secret": idp.client_secret,
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert token.status_code == 200, token.text
    return {"nonce": nonce, "session": session, "tokens": token.json()}


def _verify(idp: DevIdp, token: str) -> dict:
    kid = jwt.get_unverified_header(token)["kid"]
    key = idp.jwks()[kid]
    return jwt.decode(
        token, key=key, algorithms=["RS256"], audience=idp.client_id, issuer=idp.issuer
    )


def test_discovery_is_proconnect_like(dev_idp):
    """Discovery under /api/v2 lists the endpoints, eidas1, RS256 userinfo and S256 PKCE."""
    meta = dev_idp.metadata()
    assert meta["issuer"] == dev_idp.issuer
    for endpoint in ("authorization", "token", "userinfo", "end_session"):
        assert meta[f"{endpoint}_endpoint"].startswith(dev_idp.issuer + "/")
    assert meta["jwks_uri"].startswith(dev_idp.issuer + "/")
    assert "eidas1" in meta["acr_values_supported"]
    assert "RS256" in meta["userinfo_signing_alg_values_supported"]
    assert "RS256" in meta["id_token_signing_alg_values_supported"]
    assert "S256" in meta["code_challenge_methods_supported"]
    assert "client_secret_post" in meta["token_endpoint_auth_methods_supported"]


def test_headless_code_flow_gives_signed_id_token_and_userinfo(dev_idp):
    """login_hint + PKCE + client_secret_post: RS256 ID token and a JWT userinfo with the claims."""
    result = _login(dev_idp, "admin@intradef.gouv.fr")
    tokens = result["tokens"]
    id_token = _verify(dev_idp, tokens["id_token"])
    assert id_token["nonce"] == result["nonce"]
    assert id_token["acr"] == "eidas1"
    assert id_token["aud"] == dev_idp.client_id
    assert re.fullmatch(r"[0-9a-f-]{36}", id_token["sub"])

    userinfo = requests.get(
        dev_idp.metadata()["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.headers["Content-Type"].startswith("application/jwt")
    claims = _verify(dev_idp, userinfo.text)
    assert claims["sub"] == id_token["sub"]
    assert claims["email"] == "admin@intradef.gouv.fr"
    assert claims["siret"] == "11004401300016"
    for name in ("given_name", "usual_name", "uid", "idp_id", "organizational_unit"):
        assert claims[name], name


def test_rotated_key_signs_new_id_tokens(dev_idp):
    """After /_dev/rotate-keys a new login's ID token has a new kid that the JWKS publishes."""
    before = jwt.get_unverified_header(
        _login(dev_idp, "agent1@intradef.gouv.fr")["tokens"]["id_token"]
    )
    kids = dev_idp.rotate_keys()
    token = _login(dev_idp, "agent1@intradef.gouv.fr")["tokens"]["id_token"]
    kid = jwt.get_unverified_header(token)["kid"]
    assert kid != before["kid"]
    assert kid == kids[0]
    assert before["kid"] in kids  # the old key stays published second
    published = [key.key_id for key in dev_idp.jwks().keys]
    assert published == kids
    _verify(dev_idp, token)


def test_key_replaced_under_the_same_kid(dev_idp):
    """/_dev/rotate-keys?same_kid=1 publishes a new key under the signing kid: new ID
    tokens keep the kid but no longer verify with the key published before."""
    before = {key.key_id: key for key in dev_idp.jwks().keys}
    kids = dev_idp.rotate_keys(same_kid=True)
    assert kids[0] in before
    assert [key.key_id for key in dev_idp.jwks().keys] == kids
    token = _login(dev_idp, "agent1@intradef.gouv.fr")["tokens"]["id_token"]
    assert jwt.get_unverified_header(token)["kid"] == kids[0]
    _verify(dev_idp, token)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, before[kids[0]], algorithms=["RS256"], audience=dev_idp.client_id)


def test_prompt_none_without_session_is_login_required(dev_idp):
    """prompt=none with no IdP session comes back to the RP with error=login_required."""
    url = _authorize_url(dev_idp, prompt="none", state="xyz-state")
    response = _follow(requests.Session(), url, dev_idp.redirect_uri)
    params = _callback_params(response)
    assert params["error"] == "login_required"
    assert params["state"] == "xyz-state"


def test_end_session_returns_to_the_rp_with_state(dev_idp):
    """/session/end with id_token_hint asks to confirm; confirming redirects back with the state."""
    result = _login(dev_idp, "agent1@culture.gouv.fr")
    session = result["session"]
    end = session.get(
        dev_idp.metadata()["end_session_endpoint"],
        params={
            "id_token_hint": result["tokens"]["id_token"],
            "state": "bye-state",
            "post_logout_redirect_uri": dev_idp.post_logout_redirect_uri,
        },
        timeout=10,
    )
    assert end.status_code == 200, end.text
    action = re.search(r'<form[^>]*action="([^"]+)"', end.text).group(1)
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', end.text).group(1)
    confirm = session.post(
        urljoin(end.url, action), data={"xsrf": xsrf, "logout": "yes"}, allow_redirects=False
    )
    assert confirm.status_code in (302, 303)
    location = confirm.headers["Location"]
    assert location.startswith(dev_idp.post_logout_redirect_uri)
    assert parse_qs(urlsplit(location).query)["state"] == ["bye-state"]


def test_account_chooser_page_logs_in_the_picked_account(dev_idp):
    """Without login_hint the IdP shows a page of accounts; posting one finishes the login."""
    session = requests.Session()
    page = _follow(session, _authorize_url(dev_idp), dev_idp.redirect_uri)
    assert page.status_code == 200
    assert "agent@inconnu.gouv.fr" in page.text
    action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    sub = re.search(r'name="accountId" value="([^"]+)"', page.text).group(1)
    response = session.post(
        urljoin(page.url, action), data={"accountId": sub}, allow_redirects=False
    )
    location = urljoin(page.url, response.headers["Location"])
    callback = _callback_params(_follow(session, location, dev_idp.redirect_uri))
    assert "code" in callback


def test_unknown_login_hint_is_an_error_page(dev_idp):
    """A login_hint naming no account gets a 400 page, not a login."""
    url = _authorize_url(dev_idp, login_hint="personne@nulle-part.fr")
    response = _follow(requests.Session(), url, dev_idp.redirect_uri)
    assert response.status_code == 400


def test_client_secret_basic_is_refused(dev_idp):
    """Like ProConnect, the token endpoint takes client_secret_post only, not HTTP Basic."""
    response = requests.post(
        dev_idp.metadata()["token_endpoint"],
        data={
            "grant_type": "authorization_code",
            "code": "x",
            "redirect_uri": dev_idp.redirect_uri,
        },
        auth=(dev_idp.client_id, dev_idp.client_secret),
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
