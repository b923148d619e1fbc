"""Shared pieces of the REST API: pagination, scoped choices, token-issue throttling
and error handling."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.throttling import BaseThrottle

from controlplane.ratelimit import RateLimited, rate_limit_hit


class ScopedChoicesMixin:
    """A serializer whose related fields choose only among what the caller may use.

    ``Serializer(data, ministries=qs, agents=qs)`` sets each named field's queryset;
    the fields are declared with an empty queryset, so a view that forgets to scope
    them fails closed.
    """

    def __init__(self, *args, **kwargs):
        scoped = {name: kwargs.pop(name) for name in ("ministries", "agents") if name in kwargs}
        super().__init__(*args, **kwargs)
        for name, queryset in scoped.items():
            if queryset is not None:
                self.fields[{"ministries": "ministry", "agents": "agent"}[name]].queryset = queryset


class Pagination(LimitOffsetPagination):
    """Limit/offset pages, 50 by default, never more than 500."""

    default_limit = 50
    max_limit = 500


class TokenIssueThrottle(BaseThrottle):
    """Token issues (``POST``) per caller, at ``RATE_LIMIT_TOKENS``: 429 with
    Retry-After and DRF's ``{"detail": ...}`` beyond. Other methods are not counted."""

    def __init__(self):
        self.retry_after = None

    def allow_request(self, request, view):
        if request.method != "POST":
            return True
        user = request.user
        token = getattr(user, "api_token", None)
        key = f"token:{token.prefix}" if token is not None else f"user:{user.pk}"
        try:
            rate_limit_hit("tokens", key=key, rate=settings.RATE_LIMIT_TOKENS)
        except RateLimited as exc:
            self.retry_after = exc.retry_after
            return False
        return True

    def wait(self):
        return self.retry_after


TOO_MANY_TOKENS = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="Too many tokens issued by this caller (RATE_LIMIT_TOKENS): "
    "`{detail}`, try again after the `Retry-After` seconds.",
)


def exception_handler(exc, context):
    """DRF's handler, plus Django's ValidationError raised by services as a 400."""
    from django.core.exceptions import ValidationError as DjangoValidationError
    from rest_framework.exceptions import ValidationError
    from rest_framework.views import exception_handler as drf_exception_handler

    from licensing.services import NoFreeSeat

    if isinstance(exc, NoFreeSeat):
        from rest_framework.response import Response

        return Response({"detail": str(exc), "code": exc.code}, status=409)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = ValidationError(detail=detail)
    return drf_exception_handler(exc, context)
