"""Usage exports for auditors: two datasets, three formats, streamed in constant memory.

Datasets:

- ``usage``: the daily roll-ups (``DailyUsage``) summed into day, week or month
  periods, per ministry (and unit); national rows (ministry empty) for callers who
  read every ministry.
- ``sessions``: one row per participant session, with a pseudonymous agent
  reference instead of anything that names the agent (data minimisation).

Rows come from a server-side cursor (a named PostgreSQL cursor, inside a
transaction so that the server streams rows instead of materialising the result)
in chunks of ``EXPORT_CHUNK_ROWS`` plain tuples: no model instance is ever built.
The sessions query does its formatting in SQL (timestamps as ISO 8601 text,
identifiers as text), so that Python only hands tuples of strings to the C ``csv``
writer. CSV and JSON Lines are written chunk by chunk into a small buffer and
yielded; XLSX is a zip archive whose directory is written last, so it is built in
``xlsxwriter``'s constant-memory mode into a temporary file, then streamed from it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.conf import settings
from django.db import connections, transaction
from django.db.models import (
    Case,
    CharField,
    F,
    Func,
    QuerySet,
    Value,
    When,
)
from django.db.models.functions import Cast, Coalesce, TruncMonth, TruncWeek
from django.db.models.sql.constants import MULTI
from django.http import StreamingHttpResponse

from accounts.access import access_for
from accounts.models import Ministry
from audit.actor import Actor
from audit.services import audit_record
from rooms.models import ParticipantSession
from usage.days import month_after, period_bounds
from usage.export_formats import Column, csv_body, jsonl_body, xlsx_body
from usage.figures import period_average_seconds, period_totals
from usage.models import DailyUsage

DATASETS = ("usage", "sessions")
FORMATS = ("csv", "xlsx", "jsonl")
GRANULARITIES = ("day", "week", "month")
DELIMITERS = (";", ",")
# ``unit`` of a usage export: empty gives each ministry's totals, ALL_UNITS one row
# per unit, anything else that unit alone.
ALL_UNITS = "*"
EXPORT_CHUNK_ROWS = 5000
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "jsonl": "application/x-ndjson",
}


@dataclass(frozen=True)
class ExportRequest:
    """What to export: already validated (see ``usage.forms.ExportForm``)."""

    dataset: str
    format: str
    first_day: date
    last_day: date
    granularity: str = "day"
    ministry: Ministry | None = None
    unit: str = ""
    delimiter: str = ";"

    def filters(self) -> dict:
        """The filters, as recorded in the audit trail."""
        return {
            "ministry": self.ministry.code if self.ministry else None,
            "unit": self.unit,
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            "granularity": self.granularity,
        }


@dataclass
class Export:
    """An export ready to stream: ``body`` yields bytes and reads the database lazily."""

    filename: str
    content_type: str
    body: Iterator[bytes] = field(repr=False)


# --- SQL expressions -------------------------------------------------------------


class UtcIsoText(Func):
    """A timestamp as ISO 8601 text in UTC (``2026-11-02T09:15:00Z``), formatted by
    the database so that Python only copies strings."""

    output_field = CharField()
    template = "TO_CHAR(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


class AgentPseudonym(Func):
    """16 hex digits of SHA-256(key || agent id): the same agent gets the same
    reference in every export (distinct agents can be counted), and nobody without
    the key can go back from it to the agent."""

    output_field = CharField()
    arg_joiner = " || "
    template = "LEFT(ENCODE(SHA256(CONVERT_TO(%(expressions)s, 'UTF8')), 'hex'), 16)"

    def __init__(self, expression, **extra):
        super().__init__(Value(pseudonym_key()), Cast(expression, CharField()), **extra)


class SpreadsheetSafe(Func):
    """Free text a spreadsheet would take for a formula (``=``, ``+``, ``-``, ``@``)
    gets a leading apostrophe (CSV injection)."""

    output_field = CharField()
    template = (
        "CASE WHEN SUBSTR(%(expressions)s, 1, 1) IN ('=', '+', '-', '@') "
        "THEN '''' || %(expressions)s ELSE %(expressions)s END"
    )


def pseudonym_key() -> str:
    """The key of agent pseudonyms, derived from SECRET_KEY (rotating it changes them)."""
    return hmac.new(
        settings.SECRET_KEY.encode(), b"usage.export.agent-pseudonym", hashlib.sha256
    ).hexdigest()


# --- datasets ----------------------------------------------------------------------


def _scoped(queryset: QuerySet, *, user, ministry: Ministry | None) -> QuerySet:
    """Rows of the ministries the caller reads (all of them, national rows included,
    for operators and national auditors); only ``ministry``'s when given."""
    access = access_for(user)
    if not access.is_staff_role:
        return queryset.none()
    if ministry is not None:
        if not access.can_read(ministry.pk):
            return queryset.none()
        return queryset.filter(ministry=ministry)
    readable = access.readable_ministries
    if readable is None:
        return queryset
    return queryset.filter(ministry_id__in=readable)


SESSION_COLUMNS = (
    Column("joined_at", "timestamp"),
    Column("left_at", "timestamp"),
    Column("duration_seconds", "int"),
    Column("ministry"),
    Column("organizational_unit"),
    Column("meeting"),
    Column("room"),
    Column("agent_ref"),
)


def sessions_queryset(*, user, request: ExportRequest) -> QuerySet:
    """Participant sessions joined in the period, as tuples in ``SESSION_COLUMNS``
    order, unsorted (as stored, roughly by arrival): sorting millions of rows would
    hold the first byte back until the database had sorted them all (a proxy's idle
    timeout), and a spreadsheet sorts them in a click."""
    start, end = period_bounds(request.first_day, request.last_day)
    sessions = _scoped(
        ParticipantSession.objects.filter(joined_at__gte=start, joined_at__lt=end),
        user=user,
        ministry=request.ministry,
    )
    if request.unit and request.unit != ALL_UNITS:
        sessions = sessions.filter(organizational_unit=request.unit)
    unit = F("organizational_unit")
    return (
        sessions.annotate(
            x_joined=UtcIsoText("joined_at"),
            x_left=UtcIsoText("left_at"),
            x_unit=SpreadsheetSafe(unit) if request.format == "csv" else unit,
            x_meeting=Cast("meeting_id", CharField()),
            x_room=Coalesce("meeting__room__slug", "meeting__room_name"),
            # A pseudonymised session no longer points at anyone, even through a hash.
            x_agent=Case(
                When(pseudonymised_at__isnull=False, then=Value(None)),
                default=AgentPseudonym("agent_id"),
                output_field=CharField(),
            ),
        )
        .order_by()
        .values_list(
            "x_joined",
            "x_left",
            "duration_seconds",
            "ministry__code",
            "x_unit",
            "x_meeting",
            "x_room",
            "x_agent",
        )
    )


USAGE_COLUMNS = (
    Column("period_start", "date"),
    Column("period_end", "date"),
    Column("ministry"),
    Column("organizational_unit"),
    Column("meetings", "int"),
    Column("participant_minutes", "int"),
    # Distinct agents do not add up across days: the busiest day's count is given.
    Column("agents_in_meetings_max_day", "int"),
    Column("peak_concurrent", "int"),
    Column("average_meeting_seconds", "int"),
)


def usage_queryset(*, user, request: ExportRequest) -> QuerySet:
    """Daily roll-ups of the period summed per period, ministry and unit (raw tuples,
    the unit made spreadsheet-safe in SQL for CSV as the sessions' is;
    ``usage_row_shaper`` shapes them into ``USAGE_COLUMNS``)."""
    rows = _scoped(
        DailyUsage.objects.filter(day__gte=request.first_day, day__lte=request.last_day),
        user=user,
        ministry=request.ministry,
    )
    if request.unit == ALL_UNITS:
        rows = rows.exclude(organizational_unit="")
    else:
        rows = rows.filter(organizational_unit=request.unit)
    period = {"day": F("day"), "week": TruncWeek("day"), "month": TruncMonth("day")}
    unit = F("organizational_unit")
    return (
        rows.annotate(period=period[request.granularity])
        .values("period", "ministry__code", "organizational_unit")
        .annotate(**period_totals())
        .annotate(x_unit=SpreadsheetSafe(unit) if request.format == "csv" else unit)
        .order_by("period", F("ministry__code").asc(nulls_first=True), "organizational_unit")
        .values_list(
            "period",
            "ministry__code",
            "x_unit",
            "x_meetings",
            "x_minutes",
            "x_agents",
            "x_peak",
            "x_seconds",
        )
    )


def _period_end(start: date, granularity: str) -> date:
    if granularity == "day":
        return start
    if granularity == "week":
        return start + timedelta(days=6)
    return month_after(start) - timedelta(days=1)


def usage_row_shaper(request: ExportRequest) -> Callable[[tuple], tuple]:
    """Turn a raw usage tuple into an exported row: the period clipped to the request,
    sums as integers, the average meeting length weighted by meetings."""

    def shape(row: tuple) -> tuple:
        period, ministry, unit, meetings, minutes, active, peak, seconds = row
        meetings = int(meetings or 0)
        return (
            max(period, request.first_day),
            min(_period_end(period, request.granularity), request.last_day),
            ministry,
            unit,
            meetings,
            int(minutes or 0),
            int(active or 0),
            int(peak or 0),
            period_average_seconds(seconds, meetings),
        )

    return shape


def dataset_rows(*, user, request: ExportRequest) -> tuple[tuple[Column, ...], Iterator[list]]:
    """The columns of the requested dataset and a lazy iterator over chunks of rows."""
    if request.dataset == "sessions":
        return SESSION_COLUMNS, queryset_chunks(sessions_queryset(user=user, request=request))
    shape = usage_row_shaper(request)
    chunks = queryset_chunks(usage_queryset(user=user, request=request))
    return USAGE_COLUMNS, ([shape(row) for row in chunk] for chunk in chunks)


def queryset_chunks(queryset: QuerySet, chunk_size: int = EXPORT_CHUNK_ROWS) -> Iterator[list]:
    """Lists of row tuples read through a server-side cursor, ``chunk_size`` at a time.

    The query runs in a transaction so that PostgreSQL streams a plain cursor rather
    than materialising a ``WITH HOLD`` one; the transaction is a read that ends
    (rolled back or committed) when the last chunk is read or the client goes away.
    Rows skip the queryset machinery: the compiler's own chunks are handed on, with
    the expressions' converters applied where there are some (sums, truncated dates).
    """
    with transaction.atomic(using=queryset.db):
        # A cursor is planned for its first rows (nested loops over indexes); an
        # export reads them all, which hash joins and one sort do far faster.
        with connections[queryset.db].cursor() as cursor:
            cursor.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        compiler = queryset.query.get_compiler(using=queryset.db)
        chunks = compiler.execute_sql(MULTI, chunked_fetch=True, chunk_size=chunk_size)
        fields = [s[0] for s in compiler.select[0 : compiler.col_count]]
        converters = compiler.get_converters(fields)
        for chunk in chunks:
            if converters:
                yield [tuple(r) for r in compiler.apply_converters(chunk, converters)]
            else:
                yield chunk


# --- the export itself -------------------------------------------------------------


def export_filename(request: ExportRequest) -> str:
    scope = request.ministry.code if request.ministry else "all"
    period = f"{request.first_day:%Y%m%d}-{request.last_day:%Y%m%d}"
    suffix = f"-{request.granularity}" if request.dataset == "usage" else ""
    return f"{request.dataset}-{scope}-{period}{suffix}.{request.format}"


def usage_export_body(*, user, request: ExportRequest) -> Iterator[bytes]:
    """The export's bytes, lazily: the database is read as the consumer pulls them."""
    columns, chunks = dataset_rows(user=user, request=request)
    if request.format == "csv":
        return csv_body(columns, chunks, delimiter=request.delimiter)
    if request.format == "jsonl":
        return jsonl_body(columns, chunks)
    return xlsx_body(columns, chunks, sheet=request.dataset)


def usage_export_open(*, actor: Actor, user, request: ExportRequest) -> Export:
    """Record the export in the audit trail (committed before a byte is sent), then
    return its lazy body. The caller has checked that ``user`` may export and read
    ``request.ministry``; rows are scoped to ``user`` again here all the same."""
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="usage.export",
            ministry_id=request.ministry.pk if request.ministry else None,
            data={
                "dataset": request.dataset,
                "format": request.format,
                "filters": request.filters(),
                "rows": "streamed",
            },
        )
    return Export(
        filename=export_filename(request),
        content_type=CONTENT_TYPES[request.format],
        body=usage_export_body(user=user, request=request),
    )


def export_http_response(export: Export) -> StreamingHttpResponse:
    """A streamed download of the export."""
    response = StreamingHttpResponse(export.body, content_type=export.content_type)
    response["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def export_allowed(user) -> bool:
    """Auditors, ministry admins and operators export; agents without a role do not."""
    return access_for(user).is_staff_role


__all__ = [
    "ALL_UNITS",
    "DATASETS",
    "DELIMITERS",
    "FORMATS",
    "GRANULARITIES",
    "Export",
    "ExportRequest",
    "export_allowed",
    "export_http_response",
    "usage_export_open",
]
