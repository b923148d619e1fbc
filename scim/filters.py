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
from django.utils.translation import gettext as _
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


# A directory's filter is a probe (``userName eq "…"``) or a handful of terms; these
# bounds keep a hostile one from costing seconds of parsing and SQL planning.
MAX_FILTER_LENGTH = 4096
MAX_FILTER_NESTING = 16
MAX_FILTER_TERMS = 50


def filter_text_check(text) -> None:
    """Refuse, before parsing, a filter longer than MAX_FILTER_LENGTH characters or
    nested (parentheses, brackets) deeper than MAX_FILTER_NESTING."""
    if not isinstance(text, str):
        return  # the model's validation says what is wrong with it
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidFilterException(
            detail=_("A filter is limited to %(n)s characters.") % {"n": MAX_FILTER_LENGTH}
        )
    depth, quoted, escaped = 0, False, False
    for char in text:
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            continue
        if char == '"':
            quoted = True
        elif char in "([":
            depth += 1
            if depth > MAX_FILTER_NESTING:
                raise InvalidFilterException(
                    detail=_("A filter is limited to %(n)s nested levels.")
                    % {"n": MAX_FILTER_NESTING}
                )
        elif char in ")]":
            depth -= 1


def _terms(node: FilterNode) -> int:
    count, stack = 0, [node]
    while stack:
        node = stack.pop()
        if isinstance(node, LogicalExpr):
            stack.extend(node.terms)
        elif isinstance(node, Not):
            stack.append(node.expr)
        elif isinstance(node, ValuePath):
            stack.append(node.val_filter)
        else:
            count += 1
    return count


def filter_compile(text: str, resource: str) -> Q:
    """Parse ``text`` as the endpoint does (a SearchRequest's filter) and compile it;
    any filter that cannot run raises ``InvalidFilterException`` saying why."""
    model = {"user": UserWithExtension, "group": Group}[resource]
    filter_text_check(text)
    try:
        search = SearchRequest[model].model_validate(
            {"filter": text}, scim_ctx=Context.SEARCH_REQUEST
        )
    except PydanticValidationError as exc:
        raise InvalidFilterException(detail=Error.from_validation_errors(exc)[0].detail) from exc
    return compile_filter(search.filter.ast, resource)


def compile_filter(node: FilterNode, resource: str) -> Q:
    """Return the ``Q`` selecting the rows ``node`` matches (``resource``: user/group)."""
    if _terms(node) > MAX_FILTER_TERMS:
        raise InvalidFilterException(
            detail=_("A filter is limited to %(n)s comparisons.") % {"n": MAX_FILTER_TERMS}
        )
    schemas, columns = SCHEMAS[resource]
    return _compile(node, lambda path: _column(path, schemas, columns, prefix=None))


def _column(path: AttrPath, schemas, columns, prefix: str | None) -> Column:
    if path.uri and path.uri.lower() not in schemas:
        raise InvalidFilterException(
            detail=_("Unknown schema in filter: %(uri)s") % {"uri": path.uri}
        )
    name = path.attr.lower()
    if prefix:
        name = f"{prefix}.{name}"
    if path.sub_attr:
        name = f"{name}.{path.sub_attr.lower()}"
    column = columns.get(name)
    if column is None:
        raise InvalidFilterException(
            detail=_("Filtering on “%(path)s” is not supported.") % {"path": path}
        )
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
                raise InvalidFilterException(
                    detail=_("Unsupported path in “%(node)s”.") % {"node": node}
                )
            return resolve(AttrPath(attr=outer.attr, sub_attr=path.attr, uri=outer.uri))

        return _compile(node.val_filter, inner)
    if isinstance(node, Present):
        return _present(resolve(node.attr_path))
    if isinstance(node, Comparison):
        return _comparison(resolve(node.attr_path), node)
    raise InvalidFilterException(
        detail=_("Unsupported filter expression: %(node)s") % {"node": node}
    )


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
                detail=_("“%(path)s” is a boolean: only eq true/false applies.")
                % {"path": node.attr_path}
            )
        return Q(**{column.field: value})
    if column.kind == "id":
        if op != CompareOperator.eq or not isinstance(value, str):
            raise InvalidFilterException(
                detail=_("“%(path)s” only supports eq.") % {"path": node.attr_path}
            )
        try:
            return Q(**{column.field: UUID(value)})
        except ValueError:
            return Q(pk__in=[])  # no resource has an id that is not a UUID
    if column.kind == "datetime":
        if op not in ORDER_LOOKUPS and op != CompareOperator.eq:
            raise InvalidFilterException(
                detail=_("“%(path)s” is a date-time: use eq, gt, ge, lt or le.")
                % {"path": node.attr_path}
            )
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise InvalidFilterException(
                detail=_("“%(value)s” is not an RFC 3339 date-time.") % {"value": value}
            ) from exc
        lookup = ORDER_LOOKUPS.get(op, "exact")
        return Q(**{f"{column.field}__{lookup}": moment})
    # strings
    if not isinstance(value, str):
        raise InvalidFilterException(
            detail=_("“%(path)s” is a string: compare it with a quoted value.")
            % {"path": node.attr_path}
        )
    if "\x00" in value:
        # No stored string holds one, and PostgreSQL refuses it in any query.
        raise InvalidFilterException(
            detail=_("The value compared with “%(path)s” holds NUL.") % {"path": node.attr_path}
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
