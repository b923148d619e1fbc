"""The one table of domain errors: what a service's refusal means to every edge.

Services raise Django's ``PermissionDenied`` (a refusal), ``ValidationError`` (bad
input), ``ObjectDoesNotExist`` (not found), or one of the classes below (a conflict,
no free seat, an outage). ``error_describe`` gives each its HTTP status, a stable
``code`` and, for SCIM (RFC 7644 §3.12), its ``scimType``; the API's exception
handler and the SCIM endpoint both render from it, so the same refusal answers the
same status and code on both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import InterfaceError, OperationalError
from django.utils.translation import gettext as _

from controlplane.ratelimit import RateLimited

# psycopg's connection failures and "server closed the connection" surface as these.
DATABASE_ERRORS = (OperationalError, InterfaceError)
DATABASE_RETRY_AFTER_SECONDS = 5


class DomainError(Exception):
    """A refusal with a kind of its own; subclasses set ``status`` and ``code``."""

    status = 400
    code = "invalid"
    scim_type: str | None = None
    retry_after: int | None = None


class Conflict(DomainError):
    """The request clashes with what exists (a unique address, a directory id)."""

    status = 409
    code = "conflict"
    scim_type = "uniqueness"


class NoSeat(DomainError):
    """Activating one more agent would exceed the ministry's licence pool."""

    status = 409
    code = "no_free_seat"


class Outage(DomainError):
    """A part the request needs cannot serve it now (the database unless a subclass
    says which); ``retry_after`` says when to try again, and the answer is never
    cached."""

    status = 503
    code = "service_unavailable"
    retry_after = DATABASE_RETRY_AFTER_SECONDS


def database_unavailable_detail() -> str:
    """What an outage of the database tells the caller, in the current language."""
    return _("The service is briefly unavailable. Please try again in a few seconds.")


@dataclass(frozen=True)
class Described:
    """How an edge answers an error: status, code, message, SCIM type, headers.

    ``fields`` holds a ValidationError's messages by field (the API answers them as
    such; SCIM joins them into ``detail``)."""

    status: int
    code: str
    detail: str
    scim_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    fields: dict[str, list[str]] | None = None


def error_describe(exc: BaseException) -> Described | None:
    """The table: each kind of error with its status and code; None for anything
    that is not a domain error (a bug: the edge lets it become a 500)."""
    if isinstance(exc, DATABASE_ERRORS):
        exc = Outage(database_unavailable_detail())
    if isinstance(exc, DomainError):
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        if isinstance(exc, Outage):
            headers["Cache-Control"] = "no-store"
        return Described(exc.status, exc.code, str(exc), exc.scim_type, headers)
    if isinstance(exc, PermissionDenied):
        return Described(403, "refused", str(exc) or _("You may not do this."))
    if isinstance(exc, ObjectDoesNotExist):
        return Described(404, "not_found", _("Not found."))
    if isinstance(exc, ValidationError):
        fields = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        return Described(
            400, "invalid", " ".join(exc.messages), "invalidValue", fields=dict(fields)
        )
    if isinstance(exc, RateLimited):
        return Described(
            429,
            "rate_limited",
            _("Too many requests: try again in %(seconds)s s.") % {"seconds": exc.retry_after},
            headers={"Retry-After": str(exc.retry_after)},
        )
    return None
