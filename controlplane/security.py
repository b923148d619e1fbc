"""Security headers Django 5.2 does not send itself: Content Security Policy and
Permissions-Policy (HSTS, nosniff, Referrer-Policy and COOP come from Django's
SecurityMiddleware, configured in settings).

The policy is strict: scripts and styles only from this site's own files (no inline
script, style element or style attribute, no ``eval``), no plugin, no framing, forms
posting only here and to the identity provider (logout redirects there). Images may
be ``data:`` URIs: DSFR draws its logo and form controls with inline SVG in its CSS.
A view that needs another policy sets the header itself; it is then left alone. With
DEBUG on, Django's technical 404 and 500 pages get none (they are styled inline).
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings

PERMISSIONS_POLICY = (
    "camera=(), microphone=(), geolocation=(), payment=(), usb=(), "
    "display-capture=(), interest-cohort=()"
)


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


@lru_cache(maxsize=8)
def _policy(form_action: tuple[str, ...]) -> str:
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "img-src": "'self' data:",
        "font-src": "'self'",
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'self'",
        "frame-ancestors": "'none'",
        "form-action": " ".join(("'self'", *form_action)),
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


def content_security_policy() -> str:
    """The policy for this configuration (read at each call: tests change settings)."""
    extra = [_origin(settings.OIDC_OP_DISCOVERY_URL)] if settings.OIDC_OP_DISCOVERY_URL else []
    extra += list(settings.CSP_FORM_ACTION_EXTRA)
    return _policy(tuple(dict.fromkeys(o for o in extra if o)))


class SecurityHeadersMiddleware:
    """Adds Content-Security-Policy and Permissions-Policy to every answer."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if settings.DEBUG and response.status_code in (404, 500):
            # Django's technical error pages (DEBUG only) are styled and scripted inline.
            response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
            return response
        response.headers.setdefault("Content-Security-Policy", content_security_policy())
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        return response
