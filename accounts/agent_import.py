"""Agents from a ministry's CSV export: parse, plan (preview), apply.

What ministries really export: UTF-8 with or without BOM, or Windows-1252; comma
or semicolon separators; French or English headers. Every row gets an outcome
(create, update, unchanged, deactivate, or an error with its line, column and
reason). Applying writes the valid rows all together or not at all, and applying
the same file twice changes nothing the second time.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Agent, Ministry
from audit.actor import Actor
from audit.services import audit_record

# Header spellings seen in ministry exports, normalised (lower case, no accents,
# no punctuation), mapped to the agent's fields.
HEADERS = {
    "email": "email",
    "courriel": "email",
    "mail": "email",
    "e mail": "email",
    "adresse electronique": "email",
    "adresse mail": "email",
    "given name": "given_name",
    "given_name": "given_name",
    "first name": "given_name",
    "prenom": "given_name",
    "usual name": "usual_name",
    "usual_name": "usual_name",
    "last name": "usual_name",
    "nom": "usual_name",
    "nom d usage": "usual_name",
    "nom usuel": "usual_name",
    "external id": "external_id",
    "external_id": "external_id",
    "identifiant": "external_id",
    "matricule": "external_id",
    "id": "external_id",
    "organizational unit": "organizational_unit",
    "organisational unit": "organizational_unit",
    "organizational_unit": "organizational_unit",
    "unite": "organizational_unit",
    "service": "organizational_unit",
    "direction": "organizational_unit",
    "unite organisationnelle": "organizational_unit",
}
FIELDS = ("email", "given_name", "usual_name", "external_id", "organizational_unit")
BATCH = 2000
LIMITS = {
    "email": 254,
    "given_name": 150,
    "usual_name": 150,
    "external_id": 255,
    "organizational_unit": 255,
}
# A spreadsheet takes a cell starting with one of these for a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@")


class ImportFileError(ValueError):
    """The file as a whole cannot be read (encoding, size, no header, no email column)."""


@dataclass
class RowOutcome:
    line: int
    action: str  # create, update, unchanged, deactivate, error
    email: str = ""
    values: dict = field(default_factory=dict)
    column: str = ""
    reason: str = ""


@dataclass
class ImportPlan:
    """What applying the file would do, row by row."""

    ministry: Ministry
    rows: list[RowOutcome]
    delimiter: str
    encoding: str

    def count(self, action: str) -> int:
        return sum(1 for row in self.rows if row.action == action)

    @property
    def counts(self) -> dict[str, int]:
        return {a: self.count(a) for a in ("create", "update", "unchanged", "deactivate", "error")}

    def errors_csv(self) -> str:
        """The rows in error, with line, column and reason, for the ministry to fix.

        It is opened in a spreadsheet and stored as text: cells read as formulas get a
        leading apostrophe, control characters (NUL among them) become U+FFFD.
        """
        out = io.StringIO()
        writer = csv.writer(out, delimiter=self.delimiter)
        writer.writerow(["line", "column", "reason", *FIELDS])
        for row in self.rows:
            if row.action == "error":
                cells = [row.reason, *(row.values.get(f, "") for f in FIELDS)]
                writer.writerow([row.line, row.column, *(_cell_safe(c) for c in cells)])
        return out.getvalue()


def _cell_safe(text: str) -> str:
    text = "".join("\ufffd" if unicodedata.category(ch) == "Cc" else ch for ch in text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _control_character(text: str) -> str | None:
    """The first control character of ``text`` (NUL, bell, line break...), or None."""
    return next((ch for ch in text if unicodedata.category(ch) == "Cc"), None)


def _normalise_header(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.strip().lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return " ".join("".join(ch if ch.isalnum() or ch == "_" else " " for ch in text).split())


def decode(raw: bytes) -> tuple[str, str]:
    """Text and encoding of an export: UTF-8 (BOM or not), else Windows-1252."""
    if len(raw) > settings.AGENT_IMPORT_MAX_BYTES:
        raise ImportFileError(
            _("The file is %(size)d MB; the limit is %(max)d MB.")
            % {"size": len(raw) // 1_000_000, "max": settings.AGENT_IMPORT_MAX_BYTES // 1_000_000}
        )
    if not raw.strip():
        raise ImportFileError(_("The file is empty."))
    head = raw[:4096]
    # UTF-16 text is about half NULs; a stray NUL is a cell's problem (a row error).
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or head.count(b"\x00") * 4 >= len(head):
        raise ImportFileError(
            _("The file looks like UTF-16: save it as CSV UTF-8 or Windows-1252.")
        )
    if raw.startswith(b"\xef\xbb\xbf"):
        try:
            return raw[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                _("The file starts as UTF-8 (byte-order mark) but byte %(pos)d is not UTF-8.")
                % {"pos": exc.start + 3}
            ) from exc
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("cp1252"), "cp1252"
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            _("The file is neither UTF-8 nor Windows-1252 (byte %(pos)d).") % {"pos": exc.start}
        ) from exc


def parse(text: str, delimiter: str | None = None) -> tuple[list[tuple[int, dict]], str, list]:
    """Rows as (line, values) with the delimiter used; errors for ragged rows."""
    first_line = text.splitlines()[0] if text else ""
    if delimiter is None:
        delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records = _records(reader)
    try:
        header = next(records)
    except StopIteration as exc:
        raise ImportFileError(_("The file has no header line.")) from exc
    columns = [HEADERS.get(_normalise_header(h)) for h in header]
    if "email" not in columns:
        raise ImportFileError(
            _("No email column: expected one of “email”, “courriel”, “adresse électronique”.")
        )
    rows, problems = [], []
    for values in records:
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            problems.append(
                RowOutcome(
                    line,
                    "error",
                    column="",
                    reason=_("%(got)d fields where the header has %(want)d.")
                    % {"got": len(values), "want": len(header)},
                )
            )
            continue
        rows.append((line, {col: v.strip() for col, v in zip(columns, values, strict=True) if col}))
    return rows, delimiter, problems


def _records(reader):
    """The reader's records; one it cannot read refuses the file, naming its line."""
    while True:
        start = reader.line_num + 1
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "field limit" in str(exc):
                raise ImportFileError(
                    _(
                        "Line %(line)d cannot be read: a field is longer than %(limit)d "
                        "characters (a quote left open?)."
                    )
                    % {"line": start, "limit": csv.field_size_limit()}
                ) from exc
            raise ImportFileError(
                _("Line %(line)d cannot be read: %(reason)s.") % {"line": start, "reason": exc}
            ) from exc


def _in_batches(queryset, field: str, values: list, size: int = 5000):
    """Rows of ``queryset`` whose ``field`` is in ``values``, a few thousand per query
    (PostgreSQL takes at most 65,535 parameters in one statement)."""
    for start in range(0, len(values), size):
        yield from queryset.filter(**{f"{field}__in": values[start : start + size]})


def _check_row(values: dict, domains: set[str]) -> tuple[str, str] | None:
    """(column, reason) of the first problem of a row, or None."""
    for name in FIELDS:
        if (char := _control_character(values.get(name, ""))) is not None:
            return name, _("Contains a control character (U+%(code)04X).") % {"code": ord(char)}
    email = values.get("email", "").lower()
    try:
        validate_email(email)
    except ValidationError:
        return "email", _("“%(email)s” is not an email address.") % {"email": email}
    if email.rpartition("@")[2] not in domains:
        return "email", _("The domain of “%(email)s” is not one of the ministry's.") % {
            "email": email
        }
    for name, limit in LIMITS.items():
        if len(values.get(name, "")) > limit:
            return name, _("Longer than %(limit)d characters.") % {"limit": limit}
    return None


def _planned_action(agent: Agent | None, values: dict) -> str:
    """create, update or unchanged: what a valid row does to the agent it names."""
    if agent is None:
        return "create"
    changes = {k: v for k, v in values.items() if k != "email" and getattr(agent, k) != v}
    return "update" if changes or not agent.is_active else "unchanged"


def agent_import_plan(
    *,
    ministry: Ministry,
    raw: bytes,
    delimiter: str | None = None,
    deactivate_missing: bool = False,
    progress: Callable[[list[RowOutcome], int], None] | None = None,
) -> ImportPlan:
    """Read the file and say what applying it would do (nothing is written).

    ``progress``, if given, is told of the outcomes as they are decided, with the
    number of rows known so far.
    """
    text, encoding = decode(raw)
    rows, delimiter, outcomes = parse(text, delimiter)
    known_rows = len(rows) + len(outcomes)
    if progress:
        progress(list(outcomes), known_rows)
    domains = set(ministry.domains.values_list("domain", flat=True))
    emails = [v.get("email", "").lower() for _line, v in rows]
    listed = set(emails)
    # A NUL cannot be stored nor even looked up in PostgreSQL: such rows are errors
    # (control character) and need no lookup.
    searchable = [e for e in emails if "\x00" not in e]
    known = {a.email: a for a in _in_batches(Agent.objects.all(), "email", searchable)}
    ids = [v["external_id"] for _line, v in rows if v.get("external_id")]
    ids = [i for i in ids if "\x00" not in i]
    id_owner = {
        a.external_id: a.email
        for a in _in_batches(Agent.objects.filter(ministry=ministry), "external_id", ids)
    }
    seen: dict[str, int] = {}
    seen_ids: dict[str, int] = {}
    for line, values in rows:
        email = values.get("email", "").lower()
        values["email"] = email
        problem = _check_row(values, domains)
        if problem is None and email in seen:
            problem = ("email", _("Already on line %(line)d of this file.") % {"line": seen[email]})
        external_id = values.get("external_id", "")
        if problem is None and external_id and external_id in seen_ids:
            problem = (
                "external_id",
                _("Already on line %(line)d of this file.") % {"line": seen_ids[external_id]},
            )
        if problem is None and id_owner.get(external_id, email) != email:
            problem = ("external_id", _("Another agent of the ministry has this identifier."))
        agent = known.get(email)
        if problem is None and agent is not None and agent.ministry_id != ministry.pk:
            problem = ("email", _("This agent belongs to another ministry."))
        if problem is not None:
            outcome = RowOutcome(line, "error", email, values, *problem)
        else:
            seen[email] = line
            if external_id:
                seen_ids[external_id] = line
            outcome = RowOutcome(line, _planned_action(agent, values), email, values)
        outcomes.append(outcome)
        if progress:
            progress([outcome], known_rows)
    if deactivate_missing:
        active = Agent.objects.filter(ministry=ministry, is_active=True).values_list(
            "email", flat=True
        )
        # Agents listed in the file, even on a row in error, are never deactivated.
        leavers = [
            RowOutcome(0, "deactivate", email) for email in active.iterator() if email not in listed
        ]
        outcomes.extend(leavers)
        if progress:
            progress(leavers, known_rows + len(leavers))
    outcomes.sort(key=lambda r: (r.line == 0, r.line))
    return ImportPlan(ministry=ministry, rows=outcomes, delimiter=delimiter, encoding=encoding)


@transaction.atomic
def agent_import_apply(
    *, actor: Actor, plan: ImportPlan, progress: Callable[[int], None] | None = None
) -> dict[str, int]:
    """Write the plan's valid rows, all or nothing; rows in error are left out.

    Seats for new and returning agents are reserved first, under the pool's lock.
    """
    from accounts.access import require_admin
    from licensing.services import seat_reserve

    ministry = plan.ministry
    require_admin(actor, ministry.pk)
    creates = [r for r in plan.rows if r.action == "create"]
    updates = [r for r in plan.rows if r.action == "update"]
    deactivations = [r for r in plan.rows if r.action == "deactivate"]
    existing = {
        a.email: a
        for a in _in_batches(
            Agent.objects.select_for_update(), "email", [r.email for r in updates + deactivations]
        )
    }
    returning = sum(1 for r in updates if not existing[r.email].is_active)
    if creates or returning:
        seat_reserve(ministry=ministry, count=len(creates) + returning - len(deactivations))
    now = timezone.now()
    # Built and written a batch at a time: 100,000 model instances at once would
    # cost hundreds of megabytes. Agents log in through ProConnect: no password.
    for start in range(0, len(creates), BATCH):
        Agent.objects.bulk_create(
            Agent(ministry=ministry, password=UNUSABLE_PASSWORD_PREFIX, **row.values)
            for row in creates[start : start + BATCH]
        )
        if progress:
            progress(min(BATCH, len(creates) - start))
    changed = []
    for row in updates:
        agent = existing[row.email]
        for name, value in row.values.items():
            setattr(agent, name, value)
        agent.is_active, agent.deactivated_at, agent.updated_at = True, None, now
        changed.append(agent)
    for row in deactivations:
        agent = existing[row.email]
        agent.is_active, agent.deactivated_at, agent.updated_at = False, now, now
        changed.append(agent)
    Agent.objects.bulk_update(
        changed,
        [
            "given_name",
            "usual_name",
            "external_id",
            "organizational_unit",
            "is_active",
            "deactivated_at",
            "updated_at",
        ],
        batch_size=2000,
    )
    if progress:
        progress(len(changed))
    counts = plan.counts
    if creates or changed:  # a file already applied changes nothing, not even the trail
        audit_record(
            actor=actor,
            action="agent.import",
            target=ministry,
            ministry_id=ministry.pk,
            data={"counts": counts, "encoding": plan.encoding},
        )
    return counts
