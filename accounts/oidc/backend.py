"""Authentication backend: the code flow's server side, then "who gets in"."""

from django.contrib.auth import get_user_model
from django.urls import reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import absolutify

from accounts.login import agent_login
from accounts.oidc import provider
from audit.actor import client_ip


class ProConnectBackend(OIDCAuthenticationBackend):
    """Exchanges the code, verifies the ID token and userinfo to the letter, then hands
    the claims to ``agent_login``. Raises ``LoginRefused`` rather than returning None,
    so that the callback can say why."""

    def __init__(self, *args, **kwargs):
        # The parent reads static endpoint settings here; ours come from discovery.
        self.UserModel = get_user_model()

    def authenticate(self, request, nonce=None, code_verifier=None, **kwargs):
        if request is None or "code" not in request.GET or "state" not in request.GET:
            return None
        tokens = provider.exchange_code(
            code=request.GET["code"],
            redirect_uri=absolutify(request, reverse("oidc_authentication_callback")),
            code_verifier=code_verifier,
        )
        id_claims = provider.verify_id_token(tokens["id_token"], nonce=nonce)
        userinfo = provider.fetch_userinfo(tokens["access_token"], id_token_claims=id_claims)
        claims = {**userinfo, "acr": id_claims.get("acr")}
        agent = agent_login(claims=claims, ip=client_ip(request))
        # Kept for RP-initiated logout (id_token_hint); the access token is not kept.
        request.session["oidc_id_token"] = tokens["id_token"]
        return agent

    def get_user(self, user_id):
        """Deactivated agents lose their sessions on their very next request."""
        return self.UserModel.objects.filter(pk=user_id, is_active=True).first()
