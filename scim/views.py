"""The SCIM 2.0 endpoint (RFC 7643/7644) at ``/scim/v2/``, for ministries' directories.

Every request carries the ministry's directory token and only ever reaches that
ministry's agents and groups. Bodies are validated with scim2-models before any
write; errors are SCIM error bodies with a ``scimType`` where RFC 7644 has one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, Value
from django.db.models.functions import Concat, Trim
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from pydantic import ValidationError as PydanticValidationError
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    Error,
    ETag,
    Filter,
    ForbiddenException,
    InvalidSyntaxException,
    InvalidValueException,
    Meta,
    NotFoundException,
    NotImplementedException,
    Patch,
    PatchOp,
    PayloadTooLargeException,
    PreconditionFailedException,
    ResourceType,
    ResponseParameters,
    Schema,
    SCIMException,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
    UnauthorizedException,
)

from accounts.api.authentication import ApiTokenPrincipal
from accounts.models import Agent
from audit.actor import Actor, client_ip
from controlplane.errors import error_describe
from controlplane.ratelimit import rate_limit_hit
from scim import services
from scim.filters import compile_filter
from scim.models import DirectoryGroup
from scim.resources import (
    Email,
    EnterpriseUser,
    Group,
    GroupMember,
    GroupMembership,
    Name,
    UserWithExtension,
)

logger = logging.getLogger(__name__)

CONTENT_TYPE = "application/scim+json"
MAX_RESULTS = 200
DEFAULT_COUNT = 100
MAX_BODY_BYTES = 1_000_000


def config() -> ServiceProviderConfig:
    return ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Directory token",
                description="The ministry's directory token (scim_…), one per ministry, "
                "issued by its admins.",
                primary=True,
            )
        ],
    )


RESOURCE_TYPES = {
    "User": ResourceType.from_resource(UserWithExtension),
    "Group": ResourceType.from_resource(Group),
}
SCHEMAS = {
    schema.id: schema
    for schema in (
        UserWithExtension.to_schema(),
        EnterpriseUser.to_schema(),
        Group.to_schema(),
        ServiceProviderConfig.to_schema(),
        ResourceType.to_schema(),
        Schema.to_schema(),
    )
}


# -- Responses ------------------------------------------------------------------


def _json(body: Any, status: int = 200, headers: dict | None = None) -> HttpResponse:
    response = HttpResponse(
        json.dumps(body, default=str) if body is not None else b"",
        status=status,
        content_type=CONTENT_TYPE if body is not None else None,
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _error(exc: SCIMException) -> HttpResponse:
    body = exc.to_error().model_dump()
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="SCIM"'
    return _json(body, status=int(exc.status), headers=headers)


def scim_error_response(described) -> HttpResponse:
    """A domain error, from the one error table, as a SCIM error body."""
    error = SCIMException(detail=described.detail)
    error.status, error.scim_type = described.status, described.scim_type
    response = _error(error)
    for name, value in described.headers.items():
        response[name] = value
    return response


def _base(request) -> str:
    return request.build_absolute_uri("/scim/v2")


def _etag(dumped: dict) -> str:
    content = {k: v for k, v in dumped.items() if k != "meta"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode())
    return f'W/"{digest.hexdigest()[:20]}"'


def _with_meta(resource, kind: str, row, base: str):
    """Complete a resource with its meta; the version is a digest of its content."""
    resource.meta = Meta(
        resource_type=kind,
        created=row.created_at,
        last_modified=row.updated_at,
        location=f"{base}/{kind}s/{row.pk}",
    )
    resource.meta.version = _etag(resource.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    return resource


# -- Mapping --------------------------------------------------------------------


def _user(agent: Agent, base: str) -> UserWithExtension:
    names = None
    if agent.given_name or agent.usual_name:
        names = Name(given_name=agent.given_name or None, family_name=agent.usual_name or None)
    groups = [
        GroupMembership(value=str(g.pk), ref=f"{base}/Groups/{g.pk}", display=g.display_name)
        for g in agent.directory_groups.all()
    ]
    user = UserWithExtension(
        id=str(agent.pk),
        external_id=agent.external_id or None,
        user_name=agent.email,
        name=names,
        display_name=agent.full_name or None,
        active=agent.is_active,
        emails=[Email(value=agent.email, type="work", primary=True)],
        groups=groups or None,
    )
    if agent.organizational_unit:
        user[EnterpriseUser] = EnterpriseUser(department=agent.organizational_unit)
    return _with_meta(user, "User", agent, base)


def _agent_data(user: UserWithExtension) -> services.AgentData:
    email = (user.user_name or "").strip().lower()
    if not email or "@" not in email:
        raise InvalidValueException(detail="userName must be the agent's professional email.")
    extension = user[EnterpriseUser]
    return services.AgentData(
        email=email,
        given_name=(user.name.given_name or "") if user.name else "",
        usual_name=(user.name.family_name or "") if user.name else "",
        external_id=user.external_id or "",
        organizational_unit=(extension.department or "") if extension else "",
        active=user.active,
    )


def _group(group: DirectoryGroup, base: str) -> Group:
    members = [
        GroupMember(value=str(a.pk), ref=f"{base}/Users/{a.pk}", type="User")
        for a in group.members.all()
    ]
    resource = Group(
        id=str(group.pk),
        external_id=group.external_id or None,
        display_name=group.display_name,
        members=members or None,
    )
    return _with_meta(resource, "Group", group, base)


def _group_fields(group: Group) -> dict:
    if not (group.display_name or "").strip():
        raise InvalidValueException(detail="displayName is required.")
    members = []
    for member in group.members or []:
        if member.type not in (None, "User"):
            raise InvalidValueException(detail="Groups hold users only, not other groups.")
        members.append(member.value)
    return {
        "display_name": group.display_name.strip(),
        "external_id": group.external_id or "",
        "members": members,
    }


# -- Request plumbing -----------------------------------------------------------


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


class DirectoryPrincipal(ApiTokenPrincipal):
    """The directory behind a token: a ministry admin of its own ministry, nothing else."""

    def __init__(self, token):
        super().__init__(token)
        self.email = f"scim:{token.prefix}"


def _body(request) -> Any:
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


def _validate(model, payload, ctx: Context):
    if not isinstance(payload, dict):
        raise InvalidSyntaxException(detail="The body must be a JSON object.")
    try:
        return model.model_validate(payload, scim_ctx=ctx)
    except PydanticValidationError as exc:
        raise SCIMException.from_error(Error.from_validation_errors(exc)[0]) from exc


def _response_parameters(model, query) -> ResponseParameters:
    params = {k: query[k] for k in ("attributes", "excludedAttributes") if k in query}
    return _validate(ResponseParameters[model], params, Context.SEARCH_REQUEST)


def _check_if_match(request, current_etag: str) -> None:
    wanted = request.META.get("HTTP_IF_MATCH")
    if not wanted:
        return
    tags = {t.strip() for t in wanted.split(",")}
    if "*" not in tags and current_etag not in tags:
        raise PreconditionFailedException(
            detail="The resource changed since you read it (If-Match does not match)."
        )


def _not_modified(request, current_etag: str) -> bool:
    wanted = request.META.get("HTTP_IF_NONE_MATCH")
    return bool(wanted) and current_etag in {t.strip() for t in wanted.split(",")}


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
            return _error(exc)
        except Exception as exc:
            described = error_describe(exc)
            if described is None:
                raise  # a bug: Django's 500
            return scim_error_response(described)

    return view


def _method_not_allowed(request) -> HttpResponse:
    exc = SCIMException(detail=f"{request.method} is not supported here.")
    exc.status = 405
    return _error(exc)


# -- Discovery ------------------------------------------------------------------


def _located(resource, location: str):
    return resource.model_copy(
        update={"meta": Meta(resource_type=type(resource).__name__, location=location)}
    )


def _list(resources: list[dict], total: int, start: int) -> dict:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": total,
        "itemsPerPage": len(resources),
        "startIndex": start,
        "Resources": resources,
    }


def _no_filter(request) -> None:
    if "filter" in request.GET:
        raise ForbiddenException(detail="Discovery endpoints cannot be filtered.")


@scim_endpoint
def service_provider_config(request, token, actor):
    if request.method != "GET":
        return _method_not_allowed(request)
    _no_filter(request)
    location = f"{_base(request)}/ServiceProviderConfig"
    return _json(_located(config(), location).model_dump())


@scim_endpoint
def resource_types(request, token, actor, type_id=None):
    if request.method != "GET":
        return _method_not_allowed(request)
    _no_filter(request)
    base = f"{_base(request)}/ResourceTypes"
    if type_id is not None:
        if type_id not in RESOURCE_TYPES:
            raise NotFoundException(detail=f"Unknown resource type “{type_id}”.")
        return _json(_located(RESOURCE_TYPES[type_id], f"{base}/{type_id}").model_dump())
    items = [_located(rt, f"{base}/{name}").model_dump() for name, rt in RESOURCE_TYPES.items()]
    return _json(_list(items, len(items), 1))


@scim_endpoint
def schemas(request, token, actor, schema_id=None):
    if request.method != "GET":
        return _method_not_allowed(request)
    _no_filter(request)
    base = f"{_base(request)}/Schemas"
    if schema_id is not None:
        if schema_id not in SCHEMAS:
            raise NotFoundException(detail=f"Unknown schema “{schema_id}”.")
        return _json(_located(SCHEMAS[schema_id], f"{base}/{schema_id}").model_dump())
    items = [_located(s, f"{base}/{sid}").model_dump() for sid, s in SCHEMAS.items()]
    return _json(_list(items, len(items), 1))


@csrf_exempt
def not_found(request, rest=""):
    return _error(NotFoundException(detail=f"Nothing at /scim/v2/{rest}."))


# -- Users and Groups -------------------------------------------------------------


class Kind:
    """What differs between /Users and /Groups."""

    def __init__(self, name, model, filter_name):
        self.name, self.model, self.filter_name = name, model, filter_name

    def queryset(self, token):
        if self.name == "User":
            return (
                Agent.objects.filter(ministry_id=token.ministry_id, erase_after__isnull=True)
                .select_related("ministry")
                .annotate(display_name=Trim(Concat("given_name", Value(" "), "usual_name")))
                .prefetch_related(
                    Prefetch(
                        "directory_groups",
                        queryset=DirectoryGroup.objects.only("id", "display_name"),
                    )
                )
            )
        return DirectoryGroup.objects.filter(ministry_id=token.ministry_id).prefetch_related(
            Prefetch("members", queryset=Agent.objects.only("id"))
        )

    def to_resource(self, row, base):
        return _user(row, base) if self.name == "User" else _group(row, base)

    def get(self, token, resource_id):
        try:
            pk = UUID(str(resource_id))
        except ValueError:
            pk = None
        row = self.queryset(token).filter(pk=pk).first() if pk else None
        if row is None:
            raise NotFoundException(detail=f"{self.name} “{resource_id}” not found.")
        return row


USER = Kind("User", UserWithExtension, "user")
GROUP = Kind("Group", Group, "group")


def _search(request, token, kind: Kind, payload: dict) -> HttpResponse:
    search = _validate(SearchRequest[kind.model], payload, Context.SEARCH_REQUEST)
    if search.sort_by is not None:
        raise NotImplementedException(detail="Sorting is not supported.")
    queryset = kind.queryset(token)
    if search.filter is not None:
        queryset = queryset.filter(compile_filter(search.filter.ast, kind.filter_name))
        if "." in str(search.filter) or "[" in str(search.filter):
            queryset = queryset.distinct()
    start = max(search.start_index or 1, 1)
    count = DEFAULT_COUNT if search.count is None else max(min(search.count, MAX_RESULTS), 0)
    total = queryset.count()
    rows = list(queryset.order_by("created_at", "pk")[start - 1 : start - 1 + count])
    base = _base(request)
    dumped = [
        kind.to_resource(row, base).model_dump(
            scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=search
        )
        for row in rows
    ]
    return _json(_list(dumped, total, start))


def _root_search(request, token, payload: dict) -> HttpResponse:
    """``POST /.search`` across Users and Groups (RFC 7644 §3.4.3): an attribute one
    type lacks evaluates to false for it; one that neither has is an invalid filter."""
    from typing import Union

    model = Union[USER.model, GROUP.model]  # noqa: UP007
    search = _validate(SearchRequest[model], payload, Context.SEARCH_REQUEST)
    if search.sort_by is not None:
        raise NotImplementedException(detail="Sorting is not supported.")
    querysets, refusals = [], []
    for kind in (USER, GROUP):
        queryset = kind.queryset(token)
        if search.filter is not None:
            try:
                queryset = queryset.filter(
                    compile_filter(search.filter.ast, kind.filter_name)
                ).distinct()
            except SCIMException as exc:
                refusals.append(exc)
                continue
        querysets.append((kind, queryset.order_by("created_at", "pk")))
    if not querysets:
        raise refusals[0]
    start = max(search.start_index or 1, 1)
    count = DEFAULT_COUNT if search.count is None else max(min(search.count, MAX_RESULTS), 0)
    base, total, dumped = _base(request), 0, []
    offset = start - 1
    for kind, queryset in querysets:
        size = queryset.count()
        if len(dumped) < count and offset < size:
            for row in queryset[offset : offset + count - len(dumped)]:
                dumped.append(
                    kind.to_resource(row, base).model_dump(
                        scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=search
                    )
                )
        offset = max(offset - size, 0)
        total += size
    return _json(_list(dumped, total, start))


@scim_endpoint
def root_search(request, token, actor):
    if request.method != "POST":
        return _method_not_allowed(request)
    payload = _body(request)
    if not isinstance(payload, dict):
        raise InvalidSyntaxException(detail="The body must be a SearchRequest object.")
    return _root_search(request, token, payload)


def _query_dict(request) -> dict:
    return {key: request.GET[key] for key in request.GET}


def _resource_response(request, kind, row, status=200, parameters=None) -> HttpResponse:
    resource = kind.to_resource(row, _base(request))
    ctx = Context.RESOURCE_QUERY_RESPONSE
    body = resource.model_dump(scim_ctx=ctx, response_parameters=parameters)
    headers = {"ETag": resource.meta.version, "Content-Location": resource.meta.location}
    if status == 201:
        headers["Location"] = resource.meta.location
    return _json(body, status=status, headers=headers)


def _collection(kind: Kind):
    @scim_endpoint
    def view(request, token, actor):
        if request.method == "GET":
            return _search(request, token, kind, _query_dict(request))
        if request.method != "POST":
            return _method_not_allowed(request)
        resource = _validate(kind.model, _body(request), Context.RESOURCE_CREATION_REQUEST)
        ministry = token.ministry
        if kind is USER:
            row = services.user_create(actor=actor, ministry=ministry, data=_agent_data(resource))
        else:
            row = services.group_create(actor=actor, ministry=ministry, **_group_fields(resource))
        return _resource_response(request, kind, kind.get(token, row.pk), status=201)

    return view


def _search_view(kind: Kind):
    @scim_endpoint
    def view(request, token, actor):
        if request.method != "POST":
            return _method_not_allowed(request)
        payload = _body(request)
        if not isinstance(payload, dict):
            raise InvalidSyntaxException(detail="The body must be a SearchRequest object.")
        return _search(request, token, kind, payload)

    return view


def _apply(actor, kind: Kind, row, resource):
    if kind is USER:
        services.user_replace(actor=actor, agent=row, data=_agent_data(resource))
    else:
        services.group_replace(actor=actor, group=row, **_group_fields(resource))


def _item(kind: Kind):
    @scim_endpoint
    def view(request, token, actor, resource_id):
        row = kind.get(token, resource_id)
        current = kind.to_resource(row, _base(request))
        if request.method == "GET":
            if _not_modified(request, current.meta.version):
                return HttpResponse(status=304, headers={"ETag": current.meta.version})
            parameters = _response_parameters(kind.model, request.GET)
            return _resource_response(request, kind, row, parameters=parameters)
        if request.method == "DELETE":
            _check_if_match(request, current.meta.version)
            if kind is USER:
                services.user_delete(actor=actor, agent=row)
            else:
                services.group_delete(actor=actor, group=row)
            return HttpResponse(status=204)
        if request.method == "PUT":
            _check_if_match(request, current.meta.version)
            replacement = _validate(
                kind.model, _body(request), Context.RESOURCE_REPLACEMENT_REQUEST
            )
            if replacement.id is not None and replacement.id != str(row.pk):
                raise InvalidValueException(detail="The id in the body is not this resource's.")
            _apply(actor, kind, row, replacement)
        elif request.method == "PATCH":
            _check_if_match(request, current.meta.version)
            patch = _validate(PatchOp[kind.model], _body(request), Context.RESOURCE_PATCH_REQUEST)
            if patch.patch(current):
                _apply(actor, kind, row, current)
        else:
            return _method_not_allowed(request)
        parameters = _response_parameters(kind.model, request.GET)
        return _resource_response(request, kind, kind.get(token, row.pk), parameters=parameters)

    return view


users = _collection(USER)
users_search = _search_view(USER)
user = _item(USER)
groups = _collection(GROUP)
groups_search = _search_view(GROUP)
group = _item(GROUP)
