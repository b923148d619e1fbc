"""Shared pieces of the REST API: pagination and the per-object abilities."""

from rest_framework.pagination import LimitOffsetPagination


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


def exception_handler(exc, context):
    """DRF's handler, plus Django's ValidationError raised by services as a 400, and
    an unreachable database as a 503 with Retry-After (see controlplane.outage)."""
    from django.core.exceptions import ValidationError as DjangoValidationError
    from rest_framework.exceptions import ValidationError
    from rest_framework.views import exception_handler as drf_exception_handler

    from controlplane import outage
    from licensing.services import NoFreeSeat

    if isinstance(exc, outage.DATABASE_ERRORS):
        from rest_framework.response import Response

        outage.database_unavailable_log(context["request"], exc)
        return Response(
            {"detail": outage.database_unavailable_detail(), "code": "service_unavailable"},
            status=503,
            headers={"Retry-After": str(outage.RETRY_AFTER_SECONDS), "Cache-Control": "no-store"},
        )
    if isinstance(exc, NoFreeSeat):
        from rest_framework.response import Response

        return Response({"detail": str(exc), "code": exc.code}, status=409)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = ValidationError(detail=detail)
    return drf_exception_handler(exc, context)
