"""The SCIM 2.0 endpoint (RFC 7643/7644) at ``/scim/v2/``, for ministries' directories.

Every request carries the ministry's directory token and only ever reaches that
ministry's agents and groups. Bodies are validated with scim2-models before any
write; errors are SCIM error bodies with a ``scimType`` where RFC 7644 has one.
Here are the endpoints themselves (discovery, Users, Groups, searches);
``scim.protocol`` admits requests and shapes answers, ``scim.mapping`` converts
agents and groups. ``scim.urls`` imports this module at the first SCIM request.
"""

from __future__ import annotations

from typing import Union
from uuid import UUID

from django.db.models import Prefetch, Value
from django.db.models.functions import Concat, Trim
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
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
    ResourceType,
    ResponseParameters,
    Schema,
    SCIMException,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
)

from accounts.models import Agent
from scim import services
from scim.filters import compile_filter
from scim.mapping import agent_data, group_fields, group_resource, user_resource
from scim.models import DirectoryGroup
from scim.protocol import (
    base_url,
    check_if_match,
    error_response,
    json_response,
    list_response,
    method_not_allowed,
    not_modified,
    request_body,
    response_parameters,
    scim_endpoint,
    validate,
)
from scim.resources import EnterpriseUser, Group, UserWithExtension

MAX_RESULTS = 200
DEFAULT_COUNT = 100


def config() -> ServiceProviderConfig:
    """What this server supports (RFC 7643 §5): PATCH, filters and ETags; no bulk or sort."""
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


# -- Discovery ------------------------------------------------------------------


def _located(resource, location: str):
    return resource.model_copy(
        update={"meta": Meta(resource_type=type(resource).__name__, location=location)}
    )


def _no_filter(request) -> None:
    if "filter" in request.GET:
        raise ForbiddenException(detail="Discovery endpoints cannot be filtered.")


@scim_endpoint
def service_provider_config(request, token, actor):
    """``GET /ServiceProviderConfig``: the features a directory may rely on."""
    if request.method != "GET":
        return method_not_allowed(request)
    _no_filter(request)
    location = f"{base_url(request)}/ServiceProviderConfig"
    return json_response(_located(config(), location).model_dump())


@scim_endpoint
def resource_types(request, token, actor, type_id=None):
    """``GET /ResourceTypes[/<id>]``: User and Group, where they live, their schemas."""
    if request.method != "GET":
        return method_not_allowed(request)
    _no_filter(request)
    base = f"{base_url(request)}/ResourceTypes"
    if type_id is not None:
        if type_id not in RESOURCE_TYPES:
            raise NotFoundException(detail=f"Unknown resource type “{type_id}”.")
        return json_response(_located(RESOURCE_TYPES[type_id], f"{base}/{type_id}").model_dump())
    items = [_located(rt, f"{base}/{name}").model_dump() for name, rt in RESOURCE_TYPES.items()]
    return json_response(list_response(items, len(items), 1))


@scim_endpoint
def schemas(request, token, actor, schema_id=None):
    """``GET /Schemas[/<id>]``: the attributes of each resource and message we serve."""
    if request.method != "GET":
        return method_not_allowed(request)
    _no_filter(request)
    base = f"{base_url(request)}/Schemas"
    if schema_id is not None:
        if schema_id not in SCHEMAS:
            raise NotFoundException(detail=f"Unknown schema “{schema_id}”.")
        return json_response(_located(SCHEMAS[schema_id], f"{base}/{schema_id}").model_dump())
    items = [_located(s, f"{base}/{sid}").model_dump() for sid, s in SCHEMAS.items()]
    return json_response(list_response(items, len(items), 1))


@csrf_exempt
def not_found(request, rest=""):
    """Any other path: a SCIM 404 body (not Django's page), before any authentication."""
    return error_response(NotFoundException(detail=f"Nothing at /scim/v2/{rest}."))


# -- Users and Groups -------------------------------------------------------------


class Kind:
    """What differs between /Users and /Groups."""

    def __init__(self, name, model, filter_name):
        self.name, self.model, self.filter_name = name, model, filter_name
        # pydantic caches parametrized generics such as SearchRequest[model] in a
        # WeakValueDictionary: unreferenced, one is collected and built again by a
        # later request (about 18 ms, most of a probe's time). Kept alive here.
        self.generics = tuple(g[model] for g in (SearchRequest, PatchOp, ResponseParameters))

    def queryset(self, token):
        """The rows of the token's ministry, with what their resources show prefetched."""
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
        """A row as its SCIM resource, with meta."""
        return user_resource(row, base) if self.name == "User" else group_resource(row, base)

    def get(self, token, resource_id):
        """One row of the token's ministry by id; 404 if absent, elsewhere or not a UUID."""
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
ROOT_SEARCH = SearchRequest[Union[USER.model, GROUP.model]]  # noqa: UP007 - kept, as above


def _search(request, token, kind: Kind, payload: dict) -> HttpResponse:
    search = validate(SearchRequest[kind.model], payload, Context.SEARCH_REQUEST)
    if search.sort_by is not None:
        raise NotImplementedException(detail="Sorting is not supported.")
    queryset = kind.queryset(token)
    if search.filter is not None:
        queryset = queryset.filter(compile_filter(search.filter.ast, kind.filter_name))
        if "." in str(search.filter) or "[" in str(search.filter):
            queryset = queryset.distinct()
    start = max(search.start_index or 1, 1)
    count = DEFAULT_COUNT if search.count is None else max(min(search.count, MAX_RESULTS), 0)
    rows = list(queryset.order_by("created_at", "pk")[start - 1 : start - 1 + count])
    if count and (rows or start == 1) and len(rows) < count:
        # A page that is not full ends the results, so it gives the total: a
        # directory's probe by userName costs one query, not two.
        total = start - 1 + len(rows)
    else:
        total = queryset.count()
    base = base_url(request)
    dumped = [
        kind.to_resource(row, base).model_dump(
            scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=search
        )
        for row in rows
    ]
    return json_response(list_response(dumped, total, start))


def _root_search(request, token, payload: dict) -> HttpResponse:
    """``POST /.search`` across Users and Groups (RFC 7644 §3.4.3): an attribute one
    type lacks evaluates to false for it; one that neither has is an invalid filter."""
    model = Union[USER.model, GROUP.model]  # noqa: UP007
    search = validate(SearchRequest[model], payload, Context.SEARCH_REQUEST)
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
    base, total, dumped = base_url(request), 0, []
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
    return json_response(list_response(dumped, total, start))


@scim_endpoint
def root_search(request, token, actor):
    """``POST /.search``: one search across Users and Groups."""
    if request.method != "POST":
        return method_not_allowed(request)
    payload = request_body(request)
    if not isinstance(payload, dict):
        raise InvalidSyntaxException(detail="The body must be a SearchRequest object.")
    return _root_search(request, token, payload)


def _query_dict(request) -> dict:
    return {key: request.GET[key] for key in request.GET}


def _resource_response(request, kind, row, status=200, parameters=None) -> HttpResponse:
    resource = kind.to_resource(row, base_url(request))
    ctx = Context.RESOURCE_QUERY_RESPONSE
    body = resource.model_dump(scim_ctx=ctx, response_parameters=parameters)
    headers = {"ETag": resource.meta.version, "Content-Location": resource.meta.location}
    if status == 201:
        headers["Location"] = resource.meta.location
    return json_response(body, status=status, headers=headers)


def _collection(kind: Kind):
    @scim_endpoint
    def view(request, token, actor):
        if request.method == "GET":
            return _search(request, token, kind, _query_dict(request))
        if request.method != "POST":
            return method_not_allowed(request)
        resource = validate(kind.model, request_body(request), Context.RESOURCE_CREATION_REQUEST)
        ministry = token.ministry
        if kind is USER:
            row = services.user_create(actor=actor, ministry=ministry, data=agent_data(resource))
            # The created row is what a read would return, and a new agent is in no
            # group: answer from it rather than read it back (two queries per create).
            row._prefetched_objects_cache = {"directory_groups": DirectoryGroup.objects.none()}
            return _resource_response(request, kind, row, status=201)
        row = services.group_create(actor=actor, ministry=ministry, **group_fields(resource))
        return _resource_response(request, kind, kind.get(token, row.pk), status=201)

    return view


def _search_view(kind: Kind):
    @scim_endpoint
    def view(request, token, actor):
        if request.method != "POST":
            return method_not_allowed(request)
        payload = request_body(request)
        if not isinstance(payload, dict):
            raise InvalidSyntaxException(detail="The body must be a SearchRequest object.")
        return _search(request, token, kind, payload)

    return view


def _apply(actor, kind: Kind, row, resource):
    if kind is USER:
        services.user_replace(actor=actor, agent=row, data=agent_data(resource))
    else:
        services.group_replace(actor=actor, group=row, **group_fields(resource))


def _item(kind: Kind):
    @scim_endpoint
    def view(request, token, actor, resource_id):
        row = kind.get(token, resource_id)
        current = kind.to_resource(row, base_url(request))
        if request.method == "GET":
            if not_modified(request, current.meta.version):
                return HttpResponse(status=304, headers={"ETag": current.meta.version})
            parameters = response_parameters(kind.model, request.GET)
            return _resource_response(request, kind, row, parameters=parameters)
        if request.method == "DELETE":
            check_if_match(request, current.meta.version)
            if kind is USER:
                services.user_delete(actor=actor, agent=row)
            else:
                services.group_delete(actor=actor, group=row)
            return HttpResponse(status=204)
        if request.method == "PUT":
            check_if_match(request, current.meta.version)
            replacement = validate(
                kind.model, request_body(request), Context.RESOURCE_REPLACEMENT_REQUEST
            )
            if replacement.id is not None and replacement.id != str(row.pk):
                raise InvalidValueException(detail="The id in the body is not this resource's.")
            _apply(actor, kind, row, replacement)
        elif request.method == "PATCH":
            check_if_match(request, current.meta.version)
            patch = validate(
                PatchOp[kind.model], request_body(request), Context.RESOURCE_PATCH_REQUEST
            )
            if patch.patch(current):
                _apply(actor, kind, row, current)
        else:
            return method_not_allowed(request)
        parameters = response_parameters(kind.model, request.GET)
        return _resource_response(request, kind, kind.get(token, row.pk), parameters=parameters)

    return view


users = _collection(USER)
users_search = _search_view(USER)
user = _item(USER)
groups = _collection(GROUP)
groups_search = _search_view(GROUP)
group = _item(GROUP)
