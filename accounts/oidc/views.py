"""Login, callback and logout views of the ProConnect relying party.

The parent views of mozilla-django-oidc build the authorization request (state,
nonce, PKCE, ``acr_values``) and check the callback's state; these subclasses
take the endpoints from discovery, turn every failure into a French page that
says why (and an audit event), and time the provider's share of each login.
"""

import contextlib
import logging
import time

import requests
from django.conf import settings
from django.contrib import auth
from django.core.exceptions import SuspiciousOperation
from django.http import HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils.crypto import constant_time_compare, get_random_string
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST
from mozilla_django_oidc.middleware import SessionRefresh
from mozilla_django_oidc.utils import absolutify, import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from accounts.login import LoginRefused, login_refusal_record
from accounts.metrics import LOGINS
from accounts.oidc import provider
from audit.actor import Actor, client_ip
from audit.services import audit_record
from controlplane.ratelimit import RateLimited, rate_limit_check, rate_limit_hit

logger = logging.getLogger(__name__)
# How long an agent is asked to wait before retrying when ProConnect is down.
PROVIDER_RETRY_AFTER_SECONDS = 30

# What the agent reads for each refusal: what happened, and what to do.
REASONS = {
    "ministry_not_onboarded": (
        _("Your administration does not use this service yet."),
        _("Ask your IT department to contact the service's team to join it."),
    ),
    "ministry_suspended": (
        _("Access for your administration is suspended."),
        _("Your IT department knows why and when it will come back."),
    ),
    "account_deactivated": (
        _("Your account has been deactivated."),
        _("If you think this is a mistake, contact your ministry's administrator."),
    ),
    "no_free_seat": (
        _("Your administration has no free seat left."),
        _("Your ministry's administrator can free or add seats."),
    ),
    "not_provisioned": (
        _("Your account has not been created in this service yet."),
        _("Your administration creates accounts itself: ask its administrator."),
    ),
    "ministry_mismatch": (
        _("Your account belongs to another administration than the one ProConnect gave."),
        _("Contact your ministry's administrator to correct your account."),
    ),
    "identity_conflict": (
        _("This email address is already linked to another ProConnect identity."),
        _("Contact your ministry's administrator."),
    ),
    "acr_too_low": (
        _("Your login's assurance level is too low for this service."),
        _("Log in again with your administration's identity provider."),
    ),
    "provider_unreachable": (
        _("ProConnect cannot be reached at the moment."),
        _("Please try again in a few minutes."),
    ),
    "provider_misconfigured": (
        _("The identity provider that answered is not the one this service trusts."),
        _("The login was stopped. Please try again later; the service's team is alerted."),
    ),
    "ministry_conflict": (
        _(
            "ProConnect places you in one administration (by your establishment's SIRET) "
            "but your email address belongs to another."
        ),
        _(
            "Your account cannot be created while they disagree: ask your IT department "
            "to correct your establishment or your address at your identity provider."
        ),
    ),
    "email_domain_unknown": (
        _("Your email address is not one of your administration's domains for this service."),
        _("Your ministry's administrator can add your address's domain, or create your account."),
    ),
}
SECURITY_REASON = (
    _("The login could not be verified and was stopped for your safety."),
    _("Please try again. If it happens again, contact your IT department."),
)


def _refusal(
    request, reason: str, *, claims=None, detail: str = "", status: int = 403, claimed=None
):
    """End any session, audit the refusal, and say why in French (naming the ministries
    the claims named, when they disagreed: ``claimed``)."""
    if request.user.is_authenticated:
        auth.logout(request)
    LOGINS.labels(outcome="refused", reason=reason).inc()
    if reason != "provider_unreachable":  # the provider's fault, not the client's
        # This answer is decided; the next callbacks from there get 429.
        with contextlib.suppress(RateLimited):
            rate_limit_hit(
                "login_failures",
                key=client_ip(request) or "unknown",
                rate=settings.RATE_LIMIT_LOGIN_FAILURES,
            )
    login_refusal_record(
        reason=reason, claims=claims, ip=client_ip(request), detail=detail, claimed=claimed
    )
    title, advice = REASONS.get(reason, SECURITY_REASON)
    context = {"reason": reason, "message": title, "advice": advice, "title": title}
    if claimed is not None:
        context["siret_ministry"], context["domain_ministry"] = claimed.by_siret, claimed.by_domain
    if reason == "provider_unreachable":
        context["retry_url"] = reverse("oidc_authentication_init")
    response = render(request, "console/login_refused.html", context, status=status)
    if status == 503:
        response["Retry-After"] = str(PROVIDER_RETRY_AFTER_SECONDS)
    return response


def _provider_unreachable(request, stage: str, exc: Exception):
    """ProConnect is down or in trouble: a warning for operators (the error's kind and
    status only, never a URL, code or token), and a page telling the agent to retry."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    detail = type(exc).__name__ + (f" HTTP {status}" if status else "")
    logger.warning("ProConnect unreachable at %s: %s", stage, detail)
    return _refusal(request, "provider_unreachable", detail=f"{stage}: {detail}", status=503)


def _too_many(request, exc: RateLimited):
    """429 in French, with Retry-After; nothing audited (a flood must not fill the trail)."""
    minutes = max(1, round(exc.retry_after / 60))
    response = render(
        request,
        "console/rate_limited.html",
        {"retry_after": exc.retry_after, "minutes": minutes, "limit": exc.limit},
        status=429,
    )
    response["Retry-After"] = str(exc.retry_after)
    return response


def _server_timing(response, started: float):
    """Split the request's time between this service and the provider (Server-Timing)."""
    total = time.perf_counter() - started
    upstream = provider.provider_seconds()
    response["Server-Timing"] = (
        f"app;dur={max(total - upstream, 0) * 1000:.1f}, idp;dur={upstream * 1000:.1f}"
    )
    return response


class ProConnectLoginView(OIDCAuthenticationRequestView):
    """Start the authorization code flow (state, nonce, PKCE S256, acr_values)."""

    def __init__(self, *args, **kwargs):
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID

    def get(self, request):
        started = time.perf_counter()
        provider.provider_timer_reset()
        if not settings.OIDC_ENABLED:
            return redirect("console:login")
        try:
            rate_limit_hit(
                "login", key=client_ip(request) or "unknown", rate=settings.RATE_LIMIT_LOGIN
            )
        except RateLimited as exc:
            return _too_many(request, exc)
        try:
            # Never send an agent to a provider that does not answer: say so here.
            provider.provider_check()
            self.OIDC_OP_AUTH_ENDPOINT = provider.provider_metadata()["authorization_endpoint"]
        except LoginRefused as exc:
            # The provider answered, but not as the configured one (its issuer): refuse.
            return _refusal(request, exc.reason, detail=exc.detail, status=502)
        except (requests.RequestException, ValueError) as exc:
            return _provider_unreachable(request, "authorization", exc)
        return _server_timing(super().get(request), started)

    def get_extra_params(self, request):
        """``acr_values``, and the agent's email as ``login_hint`` when the page gives one."""
        params = dict(super().get_extra_params(request))
        hint = request.GET.get("login_hint", "")
        if hint and len(hint) <= 254 and "@" in hint:
            params["login_hint"] = hint
        return params


class ProConnectCallbackView(OIDCAuthenticationCallbackView):
    """The provider's answer: refuse precisely, or log the agent in."""

    def get(self, request):
        started = time.perf_counter()
        provider.provider_timer_reset()
        try:
            rate_limit_check(
                "login_failures",
                key=client_ip(request) or "unknown",
                rate=settings.RATE_LIMIT_LOGIN_FAILURES,
            )
        except RateLimited as exc:
            return _too_many(request, exc)
        error = request.GET.get("error")
        if error:
            # The state is spent either way, so the same answer cannot be replayed.
            request.session.get("oidc_states", {}).pop(request.GET.get("state"), None)
            request.session.modified = True
            if error == "login_required":
                # A silent re-authentication found no session at the provider.
                LOGINS.labels(outcome="expired", reason="login_required").inc()
                auth.logout(request)
                return redirect(f"{reverse('console:login')}?{urlencode({'expired': 1})}")
            return _refusal(request, "provider_error", detail=str(error)[:100])
        state = request.GET.get("state", "")
        if "code" not in request.GET or state not in request.session.get("oidc_states", {}):
            return _refusal(request, "state_mismatch", status=400)
        # The state is spent now, whatever happens next (no replay of this answer).
        flow = request.session["oidc_states"].pop(state)
        request.session.modified = True
        # Unlike the parent view, the session is not saved and reloaded around the
        # token exchange: a login started meanwhile in another tab may then have to
        # be retried, and each login saves two cache round trips.
        try:
            self.user = auth.authenticate(
                request, nonce=flow.get("nonce"), code_verifier=flow.get("code_verifier")
            )
            if self.user is None or not self.user.is_active:
                return self.login_failure()
            response = self.login_success()
            LOGINS.labels(outcome="success", reason="").inc()
        except LoginRefused as exc:
            return _refusal(
                request, exc.reason, claims=exc.claims, detail=exc.detail, claimed=exc.claimed
            )
        except SuspiciousOperation as exc:
            return _refusal(request, "invalid_response", detail=str(exc)[:100], status=400)
        except requests.RequestException as exc:
            return _provider_unreachable(request, "callback", exc)
        return _server_timing(response, started)

    def login_failure(self):
        return _refusal(self.request, "login_failed")

    @property
    def success_url(self):
        """Where the login was going, if that is a page of this site; else the console.

        The session refresh stores the path it interrupted, unchecked: a path like
        ``//evil.example/`` must not turn a silent re-login into an open redirect.
        """
        target = self.request.session.get("oidc_login_next")
        if target and url_has_allowed_host_and_scheme(
            target,
            allowed_hosts={self.request.get_host()},
            require_https=self.request.is_secure(),
        ):
            return target
        return resolve_url(settings.LOGIN_REDIRECT_URL)


@require_POST
def logout_view(request):
    """End the local session at once, then ask the provider to end its own.

    The local session ends first, so an unreachable provider never keeps an agent
    logged in here.
    """
    id_token = request.session.get("oidc_id_token")
    if request.user.is_authenticated:
        user = request.user
        audit_record(
            actor=Actor(user=user, ip=client_ip(request), label=user.email),
            action="auth.logout",
            target=user,
            ministry_id=user.ministry_id,
        )
    auth.logout(request)
    if not (settings.OIDC_ENABLED and id_token):
        return redirect("console:login")
    try:
        end_session = provider.provider_metadata().get("end_session_endpoint")
    except (requests.RequestException, ValueError, LoginRefused):
        end_session = None
    if not end_session:
        return redirect("console:login")
    state = get_random_string(settings.OIDC_STATE_SIZE)
    request.session["oidc_logout_state"] = state
    query = urlencode(
        {
            "id_token_hint": id_token,
            "state": state,
            "post_logout_redirect_uri": absolutify(request, reverse("oidc_logout_callback")),
        }
    )
    return HttpResponseRedirect(f"{end_session}?{query}")


@require_GET
def logout_callback(request):
    """Back from the provider's logout: the state must be the one we sent."""
    expected = request.session.pop("oidc_logout_state", None)
    received = request.GET.get("state", "")
    if not expected or not constant_time_compare(expected, received):
        return render(request, "console/logout_unverified.html", status=400)
    return redirect(f"{reverse('console:login')}?{urlencode({'logged_out': 1})}")


class ProConnectSessionRefresh(SessionRefresh):
    """mozilla-django-oidc's silent re-authentication (prompt=none), with the
    authorization endpoint read from discovery when needed, not at start-up."""

    def __init__(self, get_response):
        super(SessionRefresh, self).__init__(get_response)
        self.OIDC_EXEMPT_URLS = import_from_settings("OIDC_EXEMPT_URLS", [])
        self.OIDC_AUTHENTICATION_CALLBACK_URL = "oidc_authentication_callback"

    def _read_settings(self):
        """Read at request time, so configuration (and tests) can change them."""
        self.OIDC_RP_CLIENT_ID = settings.OIDC_RP_CLIENT_ID
        self.OIDC_STATE_SIZE = settings.OIDC_STATE_SIZE
        self.OIDC_RP_SCOPES = settings.OIDC_RP_SCOPES
        self.OIDC_USE_NONCE = settings.OIDC_USE_NONCE
        self.OIDC_NONCE_SIZE = settings.OIDC_NONCE_SIZE

    def process_request(self, request):
        if not settings.OIDC_ENABLED or request.path_info.startswith("/api/"):
            return None
        if not self.is_refreshable_url(request):
            return None
        try:
            self.OIDC_OP_AUTHORIZATION_ENDPOINT = provider.provider_metadata()[
                "authorization_endpoint"
            ]
        except (requests.RequestException, ValueError, LoginRefused):
            return None  # the provider is down: keep the local session until it is back
        self._read_settings()
        return super().process_request(request)
