"""SCIM's HTTP plumbing (RFC 7644), shared by every endpoint under ``/scim/v2/``.

Apart from the views so that each endpoint reads as what it does: here is how a
request is admitted (rate limit, directory token, body, validation) and how every
answer is shaped (SCIM JSON, error bodies from the one error table, ETags, meta).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import ValidationError as PydanticValidationError
from scim2_models import (
    Context,
    Error,
    ForbiddenException,
    InvalidSyntaxException,
    InvalidValueException,
    Meta,
    PayloadTooLargeException,
    PreconditionFailedException,
    Resource,
    ResponseParameters,
    SCIMException,
    ScimPolicy,
    UnauthorizedException,
)

from accounts.api.authentication import ApiTokenPrincipal
from audit.actor import Actor, client_ip
from controlplane import outage
from controlplane.errors import DATABASE_ERRORS
from controlplane.ratelimit import rate_limit_hit
from scim import services

CONTENT_TYPE = "application/scim+json"
MAX_BODY_BYTES = 1_000_000


# -- Responses ------------------------------------------------------------------


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> HttpResponse:
    """A SCIM JSON answer (or an empty one when ``body`` is None), with extra headers."""
    response = HttpResponse(
        json.dumps(body, default=str) if body is not None else b"",
        status=status,
        content_type=CONTENT_TYPE if body is not None else None,
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def error_response(exc: SCIMException) -> HttpResponse:
    """A SCIM refusal as its error body; a 401 also names the Bearer scheme."""
    body = exc.to_error().model_dump()
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="SCIM"'
    return json_response(body, status=int(exc.status), headers=headers)


def scim_error_response(described) -> HttpResponse:
    """A domain error, from the one error table, as a SCIM error body."""
    error = SCIMException(detail=described.detail)
    error.status, error.scim_type = described.status, described.scim_type
    response = error_response(error)
    for name, value in described.headers.items():
        response[name] = value
    return response


def list_response(resources: list[dict], total: int, start: int) -> dict:
    """A ListResponse message (RFC 7644 §3.4.2) around one page of dumped resources."""
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": total,
        "itemsPerPage": len(resources),
        "startIndex": start,
        "Resources": resources,
    }


def method_not_allowed(request) -> HttpResponse:
    """The 405 error body for a method an endpoint does not serve."""
    exc = SCIMException(detail=f"{request.method} is not supported here.")
    exc.status = 405
    return error_response(exc)


# -- Locations, versions and meta -------------------------------------------------


def base_url(request) -> str:
    """The absolute root of the endpoint, which every ``location`` and ``$ref`` starts with."""
    return request.build_absolute_uri("/scim/v2")


def _etag(dumped: dict) -> str:
    content = {k: v for k, v in dumped.items() if k != "meta"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode())
    return f'W/"{digest.hexdigest()[:20]}"'


def with_meta(resource, kind: str, row, base: str):
    """Complete a resource with its meta; the version is a digest of its content."""
    resource.meta = Meta(
        resource_type=kind,
        created=row.created_at,
        last_modified=row.updated_at,
        location=f"{base}/{kind}s/{row.pk}",
    )
    resource.meta.version = _etag(resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    return resource


def check_if_match(request, current_etag: str) -> None:
    """Refuse a write whose ``If-Match`` names another version (412): a lost update."""
    wanted = request.META.get("HTTP_IF_MATCH")
    if not wanted:
        return
    tags = {t.strip() for t in wanted.split(",")}
    if "*" not in tags and current_etag not in tags:
        raise PreconditionFailedException(
            detail="The resource changed since you read it (If-Match does not match)."
        )


def not_modified(request, current_etag: str) -> bool:
    """Whether ``If-None-Match`` names the current version, so a 304 answers a read."""
    wanted = request.META.get("HTTP_IF_NONE_MATCH")
    return bool(wanted) and current_etag in {t.strip() for t in wanted.split(",")}


# -- Request plumbing -----------------------------------------------------------


class DirectoryPrincipal(ApiTokenPrincipal):
    """The directory behind a token: a ministry admin of its own ministry, nothing else."""

    def __init__(self, token):
        super().__init__(token)
        self.email = f"scim:{token.prefix}"


def _authenticate(request):
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, clear = header.partition(" ")
    if scheme.lower() != "bearer" or not clear.strip():
        raise UnauthorizedException(detail="A directory token is required (Bearer).")
    try:
        token = services.directory_token_authenticate(clear.strip())
    except ValueError as exc:
        raise UnauthorizedException(detail=str(exc)) from exc
    except PermissionDenied as exc:
        raise ForbiddenException(detail=str(exc)) from exc
    principal = DirectoryPrincipal(token)
    return token, Actor(user=principal, ip=client_ip(request), label=f"scim:{token.prefix}")


def request_body(request) -> Any:
    """The request's JSON body, refused if its content type is not JSON or it is too big."""
    content_type = request.META.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if content_type and not (
        content_type == "application/json"
        or (content_type.startswith("application/") and content_type.endswith("+json"))
    ):
        raise InvalidSyntaxException(detail=f"Unsupported content type “{content_type}”.")
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > MAX_BODY_BYTES:
        raise PayloadTooLargeException(detail=f"Bodies are limited to {MAX_BODY_BYTES} bytes.")
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSyntaxException(detail=f"The body is not valid JSON: {exc}") from exc


def validate(model, payload, ctx: Context, policy: ScimPolicy | None = None):
    """A payload as a scim2-models ``model`` in ``ctx`` read under ``policy`` (strict
    by default); the first problem as a SCIM error. A resource must list its own
    schema among ``schemas`` (other URNs a directory adds are tolerated by a lenient
    policy, such as Entra's ADSCIM Group schema)."""
    if not isinstance(payload, dict):
        raise InvalidSyntaxException(detail="The body must be a JSON object.")
    schema = getattr(model, "__schema__", None)
    if isinstance(model, type) and issubclass(model, Resource) and schema:
        listed = payload.get("schemas")
        if not isinstance(listed, list) or str(schema).lower() not in {
            str(urn).lower() for urn in listed
        }:
            raise InvalidValueException(detail=f"schemas must list “{schema}”.")
    try:
        return model.model_validate(payload, scim_ctx=ctx, scim_policy=policy)
    except PydanticValidationError as exc:
        raise SCIMException.from_error(Error.from_validation_errors(exc)[0]) from exc


def response_parameters(model, query) -> ResponseParameters:
    """The ``attributes``/``excludedAttributes`` a query asks the answer to keep or drop."""
    params = {k: query[k] for k in ("attributes", "excludedAttributes") if k in query}
    return validate(ResponseParameters[model], params, Context.SEARCH_REQUEST)


def _rate_limit(request) -> None:
    """Count the request against its directory token (whichever ministry it belongs
    to, checked or not: no query is spent on a flood), or its address without one."""
    scheme, _, clear = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "bearer" and clear.strip():
        key = f"token:{clear.strip()}"
    else:
        key = f"ip:{client_ip(request)}"
    rate_limit_hit("scim", key=key, rate=settings.RATE_LIMIT_SCIM)


def scim_endpoint(handler):
    """Rate-limit, authenticate, run, and turn every refusal into a SCIM error body."""

    @csrf_exempt
    def view(request, *args, **kwargs):
        try:
            _rate_limit(request)
            token, actor = _authenticate(request)
            return handler(request, token, actor, *args, **kwargs)
        except SCIMException as exc:
            return error_response(exc)
        except Exception as exc:
            described = outage.error_answer(request, exc)
            if described is None:
                raise  # a bug: Django's 500
            response = scim_error_response(described)
            if isinstance(exc, DATABASE_ERRORS):
                response._has_been_logged = True  # logged once by error_answer, not again
            return response

    return view
