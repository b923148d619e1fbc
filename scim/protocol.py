"""SCIM's HTTP plumbing (RFC 7644), shared by every endpoint under ``/scim/v2/``.

Apart from the views so that each endpoint reads as what it does: here is how a
request is admitted (rate limit, directory token, body, validation) and how every
answer is shaped (SCIM JSON, error bodies from the one error table, ETags, meta).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import OperationalError
from django.http import HttpResponse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.utils.translation.trans_real import parse_accept_lang_header
from django.views.decorators.csrf import csrf_exempt
from pydantic import ValidationError as PydanticValidationError
from scim2_models import (
    Context,
    Error,
    ForbiddenException,
    InvalidFilterException,
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
from accounts.tokens import token_digest
from audit.actor import Actor, client_ip
from controlplane import outage
from controlplane.errors import DATABASE_ERRORS
from controlplane.ratelimit import rate_limit_check, rate_limit_hit
from scim import tokens

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/scim+json"
MAX_BODY_BYTES = 1_000_000
MAX_DEPTH = 32  # a User is 4 levels deep; a PatchOp with a value filter, 6
# C0 controls and DEL, but for tab and line breaks, which RFC 7643 lets some values
# hold (a formatted address); the attributes we store refuse those too
# (scim.services). Attribute names hold none at all.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
NAME_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


# -- Responses ------------------------------------------------------------------


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> HttpResponse:
    """A SCIM JSON answer (or an empty one when ``body`` is None), with extra headers."""
    if body is None:
        return empty_response(status, headers)
    response = HttpResponse(json.dumps(body, default=str), status=status, content_type=CONTENT_TYPE)
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


def method_not_allowed(request, allow: str) -> HttpResponse:
    """The 405 error body for a method an endpoint does not serve, with ``Allow``."""
    exc = SCIMException(detail=_("%(method)s is not supported here.") % {"method": request.method})
    exc.status = 405
    response = error_response(exc)
    response["Allow"] = allow
    return response


def empty_response(status: int, headers: dict | None = None) -> HttpResponse:
    """An answer without a body (204, 304): no Content-Type either."""
    response = HttpResponse(status=status)
    del response["Content-Type"]
    for name, value in (headers or {}).items():
        response[name] = value
    return response


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
            detail=_("The resource changed since you read it (If-Match does not match).")
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
    scheme, _sep, clear = header.partition(" ")
    if scheme.lower() != "bearer" or not clear.strip():
        raise UnauthorizedException(detail=_("A directory token is required (Bearer)."))
    try:
        token = tokens.directory_token_authenticate(clear.strip())
    except ValueError as exc:
        raise UnauthorizedException(detail=str(exc)) from exc
    except PermissionDenied as exc:
        raise ForbiddenException(detail=str(exc)) from exc
    principal = DirectoryPrincipal(token)
    return token, Actor(user=principal, ip=client_ip(request), label=f"scim:{token.prefix}")


def _chunked_body(request) -> bytes:
    """A body sent without Content-Length (chunked): read it, at most one byte past
    the limit, rather than take it for empty."""
    if not hasattr(request, "_scim_chunked_body"):  # read once (a retry reads it again)
        request._scim_chunked_body = request.META["wsgi.input"].read(MAX_BODY_BYTES + 1)
    body = request._scim_chunked_body
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLargeException(
            detail=_("Bodies are limited to %(n)s bytes.") % {"n": MAX_BODY_BYTES}
        )
    return body


def _check_tree(payload: Any) -> None:
    """Refuse a body nested deeper than MAX_DEPTH (invalidSyntax) or holding a control
    character in any key or string (invalidValue): no stored value may hold one, and
    PostgreSQL refuses NUL outright. Iterative, so no depth can exhaust the stack."""
    stack = [(payload, 0, "")]
    while stack:
        node, depth, path = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidSyntaxException(
                detail=_("The body is nested deeper than %(n)s levels.") % {"n": MAX_DEPTH}
            )
        if isinstance(node, dict):
            for key, value in node.items():
                where = f"{path}.{key}" if path else key
                _check_text(key, where, NAME_CONTROL_CHARACTERS)
                stack.append((value, depth + 1, where))
        elif isinstance(node, list):
            stack.extend((item, depth + 1, path) for item in node)
        elif isinstance(node, str):
            _check_text(node, path)


def _check_text(text: str, where: str, pattern=CONTROL_CHARACTERS) -> None:
    if pattern.search(text):
        detail = _("“%(attribute)s” holds a control character.") % {"attribute": where or "body"}
        if where == "filter":
            # A search body's filter is refused as the same filter in a query is.
            raise InvalidFilterException(detail=detail)
        raise InvalidValueException(detail=detail)


def request_body(request) -> Any:
    """The request's JSON body, refused if its content type is not JSON, it is too
    big, too deeply nested or holds a control character."""
    content_type = request.META.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if content_type and not (
        content_type == "application/json"
        or (content_type.startswith("application/") and content_type.endswith("+json"))
    ):
        raise InvalidSyntaxException(
            detail=_("Unsupported content type “%(type)s”.") % {"type": content_type}
        )
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise PayloadTooLargeException(
            detail=_("Bodies are limited to %(n)s bytes.") % {"n": MAX_BODY_BYTES}
        )
    chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    raw = _chunked_body(request) if chunked and not length else request.body
    try:
        payload = json.loads(raw or b"null")
    except RecursionError as exc:
        raise InvalidSyntaxException(
            detail=_("The body is nested deeper than %(n)s levels.") % {"n": MAX_DEPTH}
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSyntaxException(detail=_("The body is not valid JSON.")) from exc
    _check_tree(payload)
    return payload


# What a body of the wrong shape answers outside English: scim2-models (pydantic)
# words its reports in English only, so each kind gets a sentence of ours.
VALUE_MESSAGES = {
    "string_type": gettext_lazy("%(attribute)s must be a string."),
    "bool_type": gettext_lazy("%(attribute)s must be true or false."),
    "bool_parsing": gettext_lazy("%(attribute)s must be true or false."),
    "int_type": gettext_lazy("%(attribute)s must be an integer."),
    "int_parsing": gettext_lazy("%(attribute)s must be an integer."),
    "int_from_float": gettext_lazy("%(attribute)s must be an integer."),
    "model_type": gettext_lazy("%(attribute)s must be an object."),
    "model_attributes_type": gettext_lazy("%(attribute)s must be an object."),
    "dict_type": gettext_lazy("%(attribute)s must be an object."),
    "list_type": gettext_lazy("%(attribute)s must be a list."),
    "string_too_long": gettext_lazy("%(attribute)s is too long."),
    "missing": gettext_lazy("%(attribute)s is required."),
    "extra_forbidden": gettext_lazy("%(attribute)s is not an attribute of this resource."),
}
INVALID_VALUE = gettext_lazy("%(attribute)s has an invalid value.")
# scim2-models' own refusals (a read-only attribute, a path matching nothing…),
# outside English: one sentence per scimType, naming the attribute it quoted.
SCIM_TYPE_MESSAGES = {
    "mutability": gettext_lazy("%(attribute)s cannot be changed this way (read-only or required)."),
    "invalidPath": gettext_lazy("The path %(attribute)s is not valid."),
    "noTarget": gettext_lazy("The path %(attribute)s matches nothing."),
    "invalidFilter": gettext_lazy("The filter is not valid (%(attribute)s)."),
    "invalidSyntax": gettext_lazy("The request does not follow its schema (%(attribute)s)."),
    "invalidValue": gettext_lazy("%(attribute)s has an invalid value."),
}
QUOTED = re.compile(r"'([^']{1,200})'")


def _camel(name: str) -> str:
    return re.sub(r"_([a-z])", lambda m: m[1].upper(), name)


def _attribute(loc) -> str:
    """A pydantic location as a SCIM attribute path (``name.givenName``)."""
    parts = [
        _camel(part)
        for part in loc
        if isinstance(part, str) and not any(c in part for c in "[(") and ":" not in part
    ]
    return ".".join(parts)


def _translated(first: dict) -> str:
    message = VALUE_MESSAGES.get(first["type"], INVALID_VALUE)
    return str(message) % {"attribute": _attribute(first["loc"]) or "body"}


def in_language(exc: SCIMException) -> SCIMException:
    """A refusal worded by scim2-models (English only), reworded when the request is
    in another language: one language per answer."""
    if translation.get_language() == "en" or exc.scim_type not in SCIM_TYPE_MESSAGES:
        return exc
    quoted = QUOTED.search(exc.detail or "")
    attribute = quoted[1] if quoted else "—"
    error = Error(
        status=exc.status,
        scim_type=exc.scim_type,
        detail=str(SCIM_TYPE_MESSAGES[exc.scim_type]) % {"attribute": attribute},
    )
    return SCIMException.from_error(error)


def _refusal(cause: PydanticValidationError) -> SCIMException:
    """The first problem of a validation as a SCIM error: invalidSyntax or
    invalidValue as scim2-models classes it, worded in the request's language (its
    own English words in English) and never as pydantic's raw report."""
    first = cause.errors()[0]
    error = Error.from_validation_error(first)
    if first["type"].startswith("scim_"):
        return in_language(SCIMException.from_error(error))
    if translation.get_language() != "en":
        error = Error(status=error.status, scim_type=error.scim_type, detail=_translated(first))
    return SCIMException.from_error(error)


def validate(model, payload, ctx: Context, policy: ScimPolicy | None = None):
    """A payload as a scim2-models ``model`` in ``ctx`` read under ``policy`` (strict
    by default); the first problem as a SCIM error. A resource must list its own
    schema among ``schemas`` (other URNs a directory adds are tolerated by a lenient
    policy, such as Entra's ADSCIM Group schema)."""
    if not isinstance(payload, dict):
        raise InvalidSyntaxException(detail=_("The body must be a JSON object."))
    schema = getattr(model, "__schema__", None)
    if isinstance(model, type) and issubclass(model, Resource) and schema:
        listed = payload.get("schemas")
        if not isinstance(listed, list) or str(schema).lower() not in {
            str(urn).lower() for urn in listed
        }:
            raise InvalidValueException(
                detail=_("schemas must list “%(schema)s”.") % {"schema": schema}
            )
    try:
        return model.model_validate(payload, scim_ctx=ctx, scim_policy=policy)
    except PydanticValidationError as exc:
        raise _refusal(exc) from exc


def apply_patch(patch, resource, **options) -> bool:
    """Apply a validated PatchOp to ``resource``; whether it changed. A value of the
    wrong type answers ``invalidValue`` naming the attribute, as on POST and PUT, not
    pydantic's raw report."""
    try:
        return patch.patch(resource, **options)
    except SCIMException as exc:
        cause = exc.__cause__
        if not isinstance(cause, PydanticValidationError):
            raise in_language(exc) from exc
        first = cause.errors()[0]
        path = _attribute(first["loc"])
        detail = f"{first['msg']}: {path}" if path else first["msg"]
        if translation.get_language() != "en":
            detail = _translated(first)
        raise InvalidValueException(detail=detail) from exc


def response_parameters(model, query) -> ResponseParameters:
    """The ``attributes``/``excludedAttributes`` a query asks the answer to keep or drop."""
    params = {k: query[k] for k in ("attributes", "excludedAttributes") if k in query}
    return validate(ResponseParameters[model], params, Context.SEARCH_REQUEST)


# A token that authenticated lately is marked in the cache (shared by the
# replicas): only a marked token gets a rate-limit bucket of its own. Anything else
# (no bearer, a malformed, unknown or revoked one) is counted against its client
# address when it fails, and refused without a query once the address is over.
KNOWN_TOKEN_SECONDS = 3600


def _bearer(request) -> str:
    scheme, _sep, clear = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return clear.strip() if scheme.lower() == "bearer" else ""


def _known_key(clear: str) -> str | None:
    if not clear or len(clear) > 128:
        return None
    return f"scim:known-token:{token_digest(clear)[:32]}"


def _cache(method: str, *args) -> Any:
    try:
        return getattr(cache, method)(*args)
    except Exception as exc:  # noqa: BLE001 - the cache is down: limits are not applied
        logger.warning("SCIM token mark not %s: cache error %s", method, type(exc).__name__)
        return None


def _admit(request):
    """Rate-limit and authenticate: a known token spends its own bucket; everything
    else is checked against its address's bucket and spends it when refused, so
    inventing bearer values buys nothing and costs no query past the limit."""
    rate, failures = settings.RATE_LIMIT_SCIM, settings.RATE_LIMIT_SCIM_FAILURES
    clear = _bearer(request)
    known_key = _known_key(clear)
    known = bool(known_key and _cache("get", known_key))
    address = f"ip:{client_ip(request)}"
    if known:
        rate_limit_hit("scim", key=f"token:{known_key}", rate=rate)
    else:
        rate_limit_check("scim", key=address, rate=failures)
    try:
        token, actor = _authenticate(request)
    except SCIMException:
        if known:
            _cache("delete", known_key)
        rate_limit_hit("scim", key=address, rate=failures)
        raise
    if not known:
        _cache("set", known_key, 1, KNOWN_TOKEN_SECONDS)
        rate_limit_hit("scim", key=f"token:{known_key}", rate=rate)
    return token, actor


def answer_language(request) -> str:
    """The answer's language: the first of Accept-Language we have, else English
    (directories are machines; the console is French, not this)."""
    supported = {code for code, _name in settings.LANGUAGES}
    for code, _quality in parse_accept_lang_header(request.META.get("HTTP_ACCEPT_LANGUAGE", "")):
        code = code.lower().partition("-")[0]
        if code in supported:
            return code
    return "en"


def _retryable(exc: BaseException) -> bool:
    """A deadlock or serialization failure: the transaction was rolled back whole and
    running it again is safe (it is not an outage)."""
    return isinstance(exc, OperationalError) and getattr(exc.__cause__, "sqlstate", None) in (
        "40P01",
        "40001",
    )


def _with_language(response: HttpResponse) -> HttpResponse:
    response["Content-Language"] = translation.get_language()
    return response


def _allowed(allow: tuple[str, ...]) -> str:
    methods = list(allow) + (["HEAD"] if "GET" in allow else [])
    return ", ".join(methods)


def scim_endpoint(handler=None, *, allow: tuple[str, ...] = ("GET",)):
    """Check the method, rate-limit, authenticate, run in the caller's language, and
    turn every refusal into a SCIM error body. ``allow``: the methods served (HEAD
    answers as GET without a body)."""
    if handler is None:
        return lambda handler: scim_endpoint(handler, allow=allow)

    def answer(request, *args, **kwargs):
        token, actor = _admit(request)
        for attempt in range(2):
            try:
                return handler(request, token, actor, *args, **kwargs)
            except OperationalError as exc:
                if not _retryable(exc):
                    raise
                if attempt:
                    error = SCIMException(
                        detail=_("A concurrent change got in the way: please try again.")
                    )
                    error.status = 409
                    raise error from exc
        raise AssertionError("unreachable")

    @csrf_exempt
    def view(request, *args, **kwargs):
        head = request.method == "HEAD" and "GET" in allow
        with translation.override(answer_language(request)):
            try:
                if request.method not in allow and not head:
                    return _with_language(method_not_allowed(request, _allowed(allow)))
                if head:
                    request.method = "GET"
                response = answer(request, *args, **kwargs)
            except SCIMException as exc:
                response = error_response(exc)
            except Exception as exc:
                described = outage.error_answer(request, exc)
                if described is None:
                    raise  # a bug: Django's 500
                response = scim_error_response(described)
                if isinstance(exc, DATABASE_ERRORS):
                    response._has_been_logged = True  # logged once by error_answer
            response = _with_language(response)
        if head:
            request.method = "HEAD"
            response.content = b""
        return response

    view.__name__ = view.__qualname__ = getattr(handler, "__name__", "view")
    return view
