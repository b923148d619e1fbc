"""Who performs a write, and from where: passed by every edge to every write service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class Actor:
    """The caller of a write service: a person, an API token, or the system itself."""

    user: Any = None  # an Agent, an ApiTokenPrincipal, or None for the system
    ip: str | None = None
    label: str = "system"
    # Only ``Actor.system`` sets this: an operator's shell command or the service itself,
    # trusted by the services (whoever runs manage.py already holds the keys).
    is_system: bool = False

    @classmethod
    def from_request(cls, request) -> Actor:
        """The authenticated caller of an HTTP request, with its client address."""
        user = getattr(request, "user", None)
        if user is not None and not user.is_authenticated:
            user = None
        return cls(user=user, ip=client_ip(request), label=_label(user))

    @classmethod
    def system(cls, label: str) -> Actor:
        """The service itself, or an operator's shell command (``label`` says which)."""
        return cls(user=None, ip=None, label=label, is_system=True)

    @property
    def agent(self):
        """The Agent behind this actor, if it is a person (not a token or the system)."""
        if self.user is None or getattr(self.user, "api_token", None) is not None:
            return None
        return self.user

    @property
    def token(self):
        return getattr(self.user, "api_token", None)


def _label(user) -> str:
    if user is None:
        return "anonymous"
    token = getattr(user, "api_token", None)
    if token is not None:
        return f"api-token:{token.prefix}"
    return user.email


def client_ip(request) -> str | None:
    """The client address as seen by the first trusted proxy (REMOTE_ADDR otherwise).

    Behind the load balancer, the right-most X-Forwarded-For entry is the one the
    balancer appended; earlier entries are client-supplied and untrusted.
    """
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if forwarded and getattr(settings, "TRUST_X_FORWARDED_FOR", False):
        return forwarded.split(",")[-1].strip() or None
    return request.META.get("REMOTE_ADDR") or None
