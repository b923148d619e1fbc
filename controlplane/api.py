"""Shared pieces of the REST API: pagination and the per-object abilities."""

from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    """Limit/offset pages, 50 by default, never more than 500."""

    default_limit = 50
    max_limit = 500


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
