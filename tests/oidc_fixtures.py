"""Fixtures of the end-to-end login tests: the dev IdP wired to the live server."""

import pytest

from accounts.oidc import provider
from tests import oidc_helpers as h
from tests.idp import running_dev_idp


def dev_idp_for(live_server):
    """A dev IdP whose client's redirect URIs are the live server's (a context)."""
    return running_dev_idp(
        redirect_uri=f"{live_server.url}/oidc/callback/",
        post_logout_redirect_uri=f"{live_server.url}/oidc/logout/callback/",
        accounts=h.ACCOUNTS,
    )


def point_rp_at(idp, settings, monkeypatch) -> h.Interceptor:
    """Configure the RP against ``idp``; return the interceptor on its calls to it."""
    settings.OIDC_OP_DISCOVERY_URL = f"{idp.issuer}/.well-known/openid-configuration"
    settings.OIDC_RP_CLIENT_ID = idp.client_id
    settings.OIDC_RP_CLIENT_SECRET = idp.client_secret
    settings.OIDC_ENABLED = True
    h.reset_provider_cache()
    interceptor = h.Interceptor()
    real = provider.session.request
    monkeypatch.setattr(
        provider.session,
        "request",
        lambda method, url, **kw: interceptor.request(real, method, url, **kw),
    )
    return interceptor


@pytest.fixture(scope="session")
def rp_idp(live_server):
    """The dev IdP with a client whose redirect URIs are the live server's."""
    with dev_idp_for(live_server) as idp:
        yield idp


@pytest.fixture
def rp(rp_idp, live_server, settings, monkeypatch):
    """The RP configured against the IdP, two ministries, and an interceptor."""
    interceptor = point_rp_at(rp_idp, settings, monkeypatch)
    alpha, bravo = h.make_ministries()

    class RP:
        pass

    rp = RP()
    rp.idp, rp.alpha, rp.bravo, rp.mitm = rp_idp, alpha, bravo, interceptor
    rp.browser = lambda: h.Browser(live_server.url)
    yield rp
    h.reset_provider_cache()
