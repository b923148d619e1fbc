"""SCIM filters (RFC 7644 §3.4.2.2) compiled to Django ``Q`` objects.

scim2-models parses the filter; this module maps its tree onto the columns of the
resource, so a search runs as one indexed query whatever the directory asks.
An attribute that is not filterable here is refused with ``invalidFilter``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from django.db.models import Q
from pydantic import ValidationError as PydanticValidationError
from scim2_models import Context, Error, InvalidFilterException, SearchRequest
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    Not,
    Present,
    ValuePath,
)

from scim.resources import ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA, Group, UserWithExtension


@dataclass(frozen=True)
class Column:
    """How one SCIM attribute is stored."""

    field: str
    kind: str = "string"  # string | bool | datetime | id | constant
    case_exact: bool = False
    blank_is_absent: bool = True  # "" stands for an unassigned string
    constant: str = ""  # for kind == "constant": the value every row has


USER_COLUMNS: dict[str, Column] = {
    "id": Column("pk", kind="id"),
    "username": Column("email"),
    "externalid": Column("external_id", case_exact=True),
    "displayname": Column("display_name"),  # annotated by the selector
    "name.givenname": Column("given_name"),
    "name.familyname": Column("usual_name"),
    "emails": Column("email"),
    "emails.value": Column("email"),
    "emails.type": Column("", kind="constant", constant="work"),
    "active": Column("is_active", kind="bool"),
    "meta.created": Column("created_at", kind="datetime"),
    "meta.lastmodified": Column("updated_at", kind="datetime"),
    "department": Column("organizational_unit"),
    "title": Column("title"),
    "preferredlanguage": Column("preferred_language"),
    "employeenumber": Column("employee_number"),
    "manager": Column("manager_id", kind="id"),
    "manager.value": Column("manager_id", kind="id"),
    "groups": Column("directory_groups__id", kind="id"),
    "groups.value": Column("directory_groups__id", kind="id"),
}

GROUP_COLUMNS: dict[str, Column] = {
    "id": Column("pk", kind="id"),
    "displayname": Column("display_name"),
    "externalid": Column("external_id", case_exact=True),
    "members": Column("members__id", kind="id"),
    "members.value": Column("members__id", kind="id"),
    "meta.created": Column("created_at", kind="datetime"),
    "meta.lastmodified": Column("updated_at", kind="datetime"),
}

SCHEMAS = {
    "user": ({USER_SCHEMA.lower(), ENTERPRISE_SCHEMA.lower()}, USER_COLUMNS),
    "group": ({GROUP_SCHEMA.lower()}, GROUP_COLUMNS),
}

STRING_LOOKUPS = {
    CompareOperator.eq: "exact",
    CompareOperator.co: "contains",
    CompareOperator.sw: "startswith",
    CompareOperator.ew: "endswith",
}
ORDER_LOOKUPS = {
    CompareOperator.gt: "gt",
    CompareOperator.ge: "gte",
    CompareOperator.lt: "lt",
    CompareOperator.le: "lte",
}


def filter_compile(text: str, resource: str) -> Q:
    """Parse ``text`` as the endpoint does (a SearchRequest's filter) and compile it;
    any filter that cannot run raises ``InvalidFilterException`` saying why."""
    model = {"user": UserWithExtension, "group": Group}[resource]
    try:
        search = SearchRequest[model].model_validate(
            {"filter": text}, scim_ctx=Context.SEARCH_REQUEST
        )
    except PydanticValidationError as exc:
        raise InvalidFilterException(detail=Error.from_validation_errors(exc)[0].detail) from exc
    return compile_filter(search.filter.ast, resource)


def compile_filter(node: FilterNode, resource: str) -> Q:
    """Return the ``Q`` selecting the rows ``node`` matches (``resource``: user/group)."""
    schemas, columns = SCHEMAS[resource]
    return _compile(node, lambda path: _column(path, schemas, columns, prefix=None))


def _column(path: AttrPath, schemas, columns, prefix: str | None) -> Column:
    if path.uri and path.uri.lower() not in schemas:
        raise InvalidFilterException(detail=f"Unknown schema in filter: {path.uri}")
    name = path.attr.lower()
    if prefix:
        name = f"{prefix}.{name}"
    if path.sub_attr:
        name = f"{name}.{path.sub_attr.lower()}"
    column = columns.get(name)
    if column is None:
        raise InvalidFilterException(detail=f"Filtering on “{path}” is not supported.")
    return column


def _compile(node: FilterNode, resolve: Callable[[AttrPath], Column]) -> Q:
    if isinstance(node, LogicalExpr):
        compiled = [_compile(term, resolve) for term in node.terms]
        result = compiled[0]
        for q in compiled[1:]:
            result = (result & q) if node.op.value == "and" else (result | q)
        return result
    if isinstance(node, Not):
        return ~_compile(node.expr, resolve)
    if isinstance(node, ValuePath):
        outer = node.attr_path

        def inner(path: AttrPath) -> Column:
            if path.sub_attr or path.uri:
                raise InvalidFilterException(detail=f"Unsupported path in “{node}”.")
            return resolve(AttrPath(attr=outer.attr, sub_attr=path.attr, uri=outer.uri))

        return _compile(node.val_filter, inner)
    if isinstance(node, Present):
        return _present(resolve(node.attr_path))
    if isinstance(node, Comparison):
        return _comparison(resolve(node.attr_path), node)
    raise InvalidFilterException(detail=f"Unsupported filter expression: {node}")


def _present(column: Column) -> Q:
    if column.kind == "constant":
        return Q()
    if column.kind == "string" and column.blank_is_absent:
        return ~Q(**{column.field: ""}) & Q(**{f"{column.field}__isnull": False})
    return Q(**{f"{column.field}__isnull": False})


def _comparison(column: Column, node: Comparison) -> Q:
    op, value = node.op, node.value
    if op == CompareOperator.ne:
        return ~_comparison(column, Comparison(node.attr_path, CompareOperator.eq, value))
    if column.kind == "constant":
        matches = _compare_constant(column.constant, op, value)
        return Q() if matches else Q(pk__in=[])
    if column.kind == "bool":
        if op != CompareOperator.eq or not isinstance(value, bool):
            raise InvalidFilterException(
                detail=f"“{node.attr_path}” is a boolean: only eq true/false applies."
            )
        return Q(**{column.field: value})
    if column.kind == "id":
        if op != CompareOperator.eq or not isinstance(value, str):
            raise InvalidFilterException(detail=f"“{node.attr_path}” only supports eq.")
        try:
            return Q(**{column.field: UUID(value)})
        except ValueError:
            return Q(pk__in=[])  # no resource has an id that is not a UUID
    if column.kind == "datetime":
        if op not in ORDER_LOOKUPS and op != CompareOperator.eq:
            raise InvalidFilterException(
                detail=f"“{node.attr_path}” is a date-time: use eq, gt, ge, lt or le."
            )
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidFilterException(detail=f"“{value}” is not an RFC 3339 date-time.") from exc
        lookup = ORDER_LOOKUPS.get(op, "exact")
        return Q(**{f"{column.field}__{lookup}": moment})
    # strings
    if not isinstance(value, str):
        raise InvalidFilterException(
            detail=f"“{node.attr_path}” is a string: compare it with a quoted value."
        )
    if "\x00" in value:
        # No stored string holds one, and PostgreSQL refuses it in any query.
        raise InvalidFilterException(
            detail=f"The value compared with “{node.attr_path}” holds NUL."
        )
    if op in ORDER_LOOKUPS:
        lookup = ORDER_LOOKUPS[op]
    else:
        lookup = STRING_LOOKUPS[op]
        if not column.case_exact:
            lookup = "i" + lookup
    if column.field == "email" and op == CompareOperator.eq:
        # Emails are stored lower-cased: an exact match uses the unique index.
        return Q(email=value.lower())
    return Q(**{f"{column.field}__{lookup}": value})


def _compare_constant(constant: str, op: CompareOperator, value) -> bool:
    if not isinstance(value, str):
        return False
    a, b = constant.lower(), value.lower()
    return {
        CompareOperator.eq: a == b,
        CompareOperator.co: b in a,
        CompareOperator.sw: a.startswith(b),
        CompareOperator.ew: a.endswith(b),
        CompareOperator.gt: a > b,
        CompareOperator.ge: a >= b,
        CompareOperator.lt: a < b,
        CompareOperator.le: a <= b,
    }[op]
