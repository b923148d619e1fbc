"""Shared pieces of the REST API: pagination, scoped choices, slug lookups, token-issue
throttling and error handling."""

from django.conf import settings
from django.core.validators import ProhibitNullCharactersValidator
from django.http import JsonResponse
from django.views.defaults import page_not_found
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import exception_handler as drf_exception_handler

from controlplane import outage
from controlplane.errors import DATABASE_ERRORS
from controlplane.ratelimit import RateLimited, rate_limit_hit

# Ministry codes, room addresses and node names are slugs: a URL whose lookup is
# anything else (a NUL byte, which PostgreSQL cannot even compare) is a 404 there.
SLUG_LOOKUP = "[-a-zA-Z0-9_]+"


class SlugChoiceField(serializers.SlugRelatedField):
    """An object named by its slug (a ministry by its code). A NUL byte is refused with
    a field error before the lookup: PostgreSQL refuses it in any query."""

    default_error_messages = {"null_characters": ProhibitNullCharactersValidator.message}

    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("null_characters")
        return super().to_internal_value(data)


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
    """DRF's handler for DRF's own refusals (authentication, permission classes,
    lookups); every domain error answers from the one table (``controlplane.errors``):
    ``{"detail", "code"}`` with its status, a ValidationError raised by a service as
    DRF's messages by field, an unreachable database as a 503 with Retry-After."""
    described = outage.error_answer(context["request"], exc)
    if described is None:
        return drf_exception_handler(exc, context)
    if described.fields is not None:
        return drf_exception_handler(DRFValidationError(detail=described.fields), context)
    response = Response(
        {"detail": described.detail, "code": described.code},
        status=described.status,
        headers=described.headers,
    )
    if isinstance(exc, DATABASE_ERRORS):
        response._has_been_logged = True  # logged once by error_answer, not again
    return response


ERROR_SCHEMA = {
    "type": "object",
    "description": "A refusal: `detail` says why; `code` names the case where there is one.",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "description": "Input refused: the messages of each field at fault, by field name "
    "(`detail` for the request as a whole).",
    "additionalProperties": {},
}
ERROR_RESPONSES = {
    "400": ("ValidationError", "The input is refused: messages by field."),
    "401": ("Error", "No credentials, or credentials that are not valid."),
    "403": ("Error", "The caller's roles do not allow this."),
    "404": ("Error", "No such object among those the caller may see."),
    "415": ("Error", "The body's content type is not one this operation reads."),
}


def schema_error_responses(result, generator, request, public):
    """drf-spectacular hook: document the refusals every operation may answer.

    Every operation needs credentials (401) and a role (403); one with a path
    parameter answers 404, one with input 400, one with a body 415. A documented
    error response without a body gets the error body the API actually sends.
    """
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas["ValidationError"] = VALIDATION_ERROR_SCHEMA
    for operations in result["paths"].values():
        for operation in operations.values():
            places = {parameter["in"] for parameter in operation.get("parameters", [])}
            has_body = "requestBody" in operation
            codes = ["401", "403"]
            if "path" in places:
                codes.append("404")
            if has_body or "query" in places:
                codes.append("400")
            if has_body:
                codes.append("415")
            responses = operation["responses"]
            for code in codes:
                responses.setdefault(code, {"description": ERROR_RESPONSES[code][1]})
            for code, response in responses.items():
                if code[0] in "45" and "content" not in response:
                    component = ERROR_RESPONSES.get(code, ("Error",))[0]
                    response["content"] = {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{component}"}
                        }
                    }
                    if response.get("description") in ("", "No response body"):
                        response["description"] = ERROR_RESPONSES.get(code, ("", "A refusal."))[1]
    return result


def not_found(request, exception=None):
    """``handler404``: under /api/ a URL that names nothing answers the API's JSON
    error body, as a missing object does; elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": str(NotFound.default_detail)}, status=404)
    return page_not_found(request, exception)
