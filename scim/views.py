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

from django.db import transaction
from django.db.models import Prefetch, Value
from django.db.models.functions import Concat, Trim
from django.http import HttpResponse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
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
from scim.filters import compile_filter, filter_text_check
from scim.mapping import agent_data, group_fields, group_resource, user_resource
from scim.models import DirectoryGroup
from scim.protocol import (
    answer_language,
    apply_patch,
    base_url,
    check_if_match,
    empty_response,
    error_response,
    json_response,
    list_response,
    not_modified,
    request_body,
    response_parameters,
    scim_endpoint,
    validate,
)
from scim.resources import POLICY, EnterpriseUser, Group, UserWithExtension, user_schema

MAX_RESULTS = 200
MAX_INDEX = 2**31 - 1
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
        user_schema(),
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
        raise ForbiddenException(detail=_("Discovery endpoints cannot be filtered."))


@scim_endpoint
def service_provider_config(request, token, actor):
    """``GET /ServiceProviderConfig``: the features a directory may rely on."""
    _no_filter(request)
    location = f"{base_url(request)}/ServiceProviderConfig"
    return json_response(_located(config(), location).model_dump())


@scim_endpoint
def resource_types(request, token, actor, type_id=None):
    """``GET /ResourceTypes[/<id>]``: User and Group, where they live, their schemas."""
    _no_filter(request)
    base = f"{base_url(request)}/ResourceTypes"
    if type_id is not None:
        if type_id not in RESOURCE_TYPES:
            raise NotFoundException(detail=_("Unknown resource type “%(id)s”.") % {"id": type_id})
        return json_response(_located(RESOURCE_TYPES[type_id], f"{base}/{type_id}").model_dump())
    items = [_located(rt, f"{base}/{name}").model_dump() for name, rt in RESOURCE_TYPES.items()]
    return json_response(list_response(items, len(items), 1))


@scim_endpoint
def schemas(request, token, actor, schema_id=None):
    """``GET /Schemas[/<id>]``: the attributes of each resource and message we serve."""
    _no_filter(request)
    base = f"{base_url(request)}/Schemas"
    if schema_id is not None:
        if schema_id not in SCHEMAS:
            raise NotFoundException(detail=_("Unknown schema “%(id)s”.") % {"id": schema_id})
        return json_response(_located(SCHEMAS[schema_id], f"{base}/{schema_id}").model_dump())
    items = [_located(s, f"{base}/{sid}").model_dump() for sid, s in SCHEMAS.items()]
    return json_response(list_response(items, len(items), 1))


@csrf_exempt
def not_found(request, rest=""):
    """Any other path: a SCIM 404 body (not Django's page), before any authentication."""
    with translation.override(answer_language(request)):
        response = error_response(
            NotFoundException(detail=_("Nothing at /scim/v2/%(path)s.") % {"path": rest})
        )
        response["Content-Language"] = translation.get_language()
    return response


# -- Users and Groups -------------------------------------------------------------


class Kind:
    """What differs between /Users and /Groups."""

    def __init__(self, name, model, filter_name, not_found):
        self.name, self.model, self.filter_name = name, model, filter_name
        self.not_found = not_found  # the 404's detail, whole, so that it translates whole
        # pydantic caches parametrized generics such as SearchRequest[model] in a
        # WeakValueDictionary: unreferenced, one is collected and built again by a
        # later request (about 18 ms, most of a probe's time). Kept alive here.
        self.generics = tuple(g[model] for g in (SearchRequest, PatchOp, ResponseParameters))

    def queryset(self, token):
        """The rows of the token's ministry, with what their resources show prefetched."""
        if self.name == "User":
            return (
                Agent.objects.filter(ministry_id=token.ministry_id, deleted_at__isnull=True)
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
            Prefetch("members", queryset=Agent.objects.filter(deleted_at__isnull=True).only("id"))
        )

    def to_resource(self, row, base):
        """A row as its SCIM resource, with meta."""
        return user_resource(row, base) if self.name == "User" else group_resource(row, base)

    def get(self, token, resource_id, lock=False):
        """One row of the token's ministry by id; 404 if absent, elsewhere or not a UUID.
        ``lock``: held until the end of the caller's transaction (a write)."""
        try:
            pk = UUID(str(resource_id))
        except ValueError:
            pk = None
        rows = self.queryset(token)
        if lock:
            rows = rows.select_for_update(of=("self",))
        row = rows.filter(pk=pk).first() if pk else None
        if row is None:
            raise NotFoundException(detail=str(self.not_found) % {"id": resource_id})
        return row


USER = Kind("User", UserWithExtension, "user", gettext_lazy("User “%(id)s” not found."))
GROUP = Kind("Group", Group, "group", gettext_lazy("Group “%(id)s” not found."))
ROOT_SEARCH = SearchRequest[Union[USER.model, GROUP.model]]  # noqa: UP007 - kept, as above


def _page(search) -> tuple[int, int]:
    """startIndex and count as RFC 7644 §3.4.2.4 reads them (below 1 is 1, a negative
    count is 0, count at most MAX_RESULTS); one past any possible row is refused."""
    for name, value in (("startIndex", search.start_index), ("count", search.count)):
        if value is not None and value > MAX_INDEX:
            raise InvalidValueException(
                detail=_("%(attribute)s must be at most %(n)s.")
                % {"attribute": name, "n": MAX_INDEX}
            )
    start = max(search.start_index or 1, 1)
    count = DEFAULT_COUNT if search.count is None else max(min(search.count, MAX_RESULTS), 0)
    return start, count


def _search_request(model, payload: dict):
    filter_text_check(payload.get("filter"))
    return validate(SearchRequest[model], payload, Context.SEARCH_REQUEST)


def _search(request, token, kind: Kind, payload: dict) -> HttpResponse:
    search = _search_request(kind.model, payload)
    if search.sort_by is not None:
        raise NotImplementedException(detail=_("Sorting is not supported."))
    queryset = kind.queryset(token)
    if search.filter is not None:
        queryset = queryset.filter(compile_filter(search.filter.ast, kind.filter_name))
        if "." in str(search.filter) or "[" in str(search.filter):
            queryset = queryset.distinct()
    start, count = _page(search)
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
    search = _search_request(model, payload)
    if search.sort_by is not None:
        raise NotImplementedException(detail=_("Sorting is not supported."))
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
    start, count = _page(search)
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


@scim_endpoint(allow=("POST",))
def root_search(request, token, actor):
    """``POST /.search``: one search across Users and Groups."""
    payload = request_body(request)
    if not isinstance(payload, dict):
        raise InvalidSyntaxException(detail=_("The body must be a SearchRequest object."))
    return _root_search(request, token, payload)


SEARCH_PARAMETERS = (
    "filter",
    "startIndex",
    "count",
    "attributes",
    "excludedAttributes",
    "sortBy",
    "sortOrder",
)


def _query_dict(request) -> dict:
    """The query's search parameters (RFC 7644 §3.4.2). Others are ignored: Entra ID
    carries its ``aadOptscim062020`` flag from the tenant URL into every request."""
    return {key: request.GET[key] for key in SEARCH_PARAMETERS if key in request.GET}


def _resource_response(request, kind, row, status=200, parameters=None) -> HttpResponse:
    resource = kind.to_resource(row, base_url(request))
    ctx = Context.RESOURCE_QUERY_RESPONSE
    body = resource.model_dump(scim_ctx=ctx, response_parameters=parameters)
    headers = {"ETag": resource.meta.version, "Content-Location": resource.meta.location}
    if status == 201:
        headers["Location"] = resource.meta.location
    return json_response(body, status=status, headers=headers)


def _collection(kind: Kind):
    @scim_endpoint(allow=("GET", "POST"))
    def view(request, token, actor):
        if request.method == "GET":
            return _search(request, token, kind, _query_dict(request))
        parameters = response_parameters(kind.model, request.GET)  # checked before writing
        payload = request_body(request)
        if kind is USER and isinstance(payload, dict) and payload.get("active") is None:
            payload["active"] = True  # a new agent is active unless told otherwise
        resource = validate(kind.model, payload, Context.RESOURCE_CREATION_REQUEST, POLICY)
        ministry = token.ministry
        if kind is USER:
            row = services.user_create(actor=actor, ministry=ministry, data=agent_data(resource))
            # The created row is what a read would return, and a new agent is in no
            # group: answer from it rather than read it back (two queries per create).
            row._prefetched_objects_cache = {"directory_groups": DirectoryGroup.objects.none()}
            return _resource_response(request, kind, row, status=201, parameters=parameters)
        row = services.group_create(actor=actor, ministry=ministry, **group_fields(resource))
        return _resource_response(
            request, kind, kind.get(token, row.pk), status=201, parameters=parameters
        )

    return view


def _search_view(kind: Kind):
    @scim_endpoint(allow=("POST",))
    def view(request, token, actor):
        payload = request_body(request)
        if not isinstance(payload, dict):
            raise InvalidSyntaxException(detail=_("The body must be a SearchRequest object."))
        return _search(request, token, kind, payload)

    return view


def _apply(actor, kind: Kind, row, resource):
    if kind is USER:
        services.user_replace(actor=actor, agent=row, data=agent_data(resource, row.email))
    else:
        services.group_replace(actor=actor, group=row, **group_fields(resource))


def _removal_values(payload):
    """Entra's removal of members lists them as ``{"$ref": null, "value": id}`` (Okta
    may add ``display``): the entries are selected by ``value`` alone, which is what
    identifies an entry (a null ``$ref`` would otherwise match nothing)."""
    operations = payload.get("Operations") if isinstance(payload, dict) else None
    for operation in operations if isinstance(operations, list) else []:
        if not isinstance(operation, dict) or str(operation.get("op", "")).lower() != "remove":
            continue
        value = operation.get("value")
        if isinstance(value, list):
            operation["value"] = [
                {"value": entry["value"]} if isinstance(entry, dict) and "value" in entry else entry
                for entry in value
            ]
    return payload


def _write(request, token, actor, kind: Kind, resource_id) -> HttpResponse:
    """PUT, PATCH or DELETE: one transaction, the row locked from read to write (so
    If-Match is compared with a version no concurrent write can change before this
    one commits), and every part of the request (body, ``attributes``) validated
    before anything is written."""
    parameters = response_parameters(kind.model, request.GET)
    payload = request_body(request) if request.method != "DELETE" else None
    with transaction.atomic():
        row = kind.get(token, resource_id, lock=True)
        current = kind.to_resource(row, base_url(request))
        check_if_match(request, current.meta.version)
        if request.method == "DELETE":
            if kind is USER:
                services.user_delete(actor=actor, agent=row)
            else:
                services.group_delete(actor=actor, group=row)
            return empty_response(204)
        if request.method == "PUT":
            if kind is USER and isinstance(payload, dict) and payload.get("active") is None:
                payload["active"] = row.is_active  # left out: the agent's state is kept
            replacement = validate(
                kind.model, payload, Context.RESOURCE_REPLACEMENT_REQUEST, POLICY
            )
            # scim2-models drops the read-only id of a replacement: read it raw.
            given = payload.get("id")
            if given is not None and str(given).lower() != str(row.pk):
                raise InvalidValueException(detail=_("The id in the body is not this resource's."))
            _apply(actor, kind, row, replacement)
        else:
            patch = validate(
                PatchOp[kind.model],
                _removal_values(payload),
                Context.RESOURCE_PATCH_REQUEST,
                POLICY,
            )
            if apply_patch(patch, current, scim_policy=POLICY):
                _apply(actor, kind, row, current)
    row = kind.get(token, row.pk)
    if request.method == "PATCH" and kind is GROUP and not _asks_attributes(request):
        # Entra asks for a 204 on group PATCH (a body would list every member, at
        # each membership change); RFC 7644 §3.5.2 allows it. The ETag still tells
        # the new version.
        resource = kind.to_resource(row, base_url(request))
        return empty_response(204, {"ETag": resource.meta.version})
    return _resource_response(request, kind, row, parameters=parameters)


def _asks_attributes(request) -> bool:
    return "attributes" in request.GET or "excludedAttributes" in request.GET


def _item(kind: Kind):
    @scim_endpoint(allow=("GET", "PUT", "PATCH", "DELETE"))
    def view(request, token, actor, resource_id):
        if request.method != "GET":
            return _write(request, token, actor, kind, resource_id)
        row = kind.get(token, resource_id)
        current = kind.to_resource(row, base_url(request))
        if not_modified(request, current.meta.version):
            return empty_response(304, {"ETag": current.meta.version})
        parameters = response_parameters(kind.model, request.GET)
        return _resource_response(request, kind, row, parameters=parameters)

    return view


users = _collection(USER)
users_search = _search_view(USER)
user = _item(USER)
groups = _collection(GROUP)
groups_search = _search_view(GROUP)
group = _item(GROUP)
