"""Reading a ministry's CSV export of agents, and the error report written back.

What ministries really export: UTF-8 with or without BOM, or Windows-1252; comma
or semicolon separators; French or English headers. A file that cannot be read as
a whole raises ``ImportFileError``; a ragged row becomes a row in error. Nothing
here touches the database: ``accounts.imports`` plans and applies the rows.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from dataclasses import dataclass, field

from django.conf import settings
from django.utils.translation import gettext as _

from accounts.models import Ministry

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
# A spreadsheet takes a cell starting with one of these for a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@")


class ImportFileError(ValueError):
    """The file as a whole cannot be read (encoding, size, no header, no email column)."""


@dataclass
class RowOutcome:
    """What one line of the file does (``line`` 0: an agent missing from the file)."""

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


def control_character(text: str) -> str | None:
    """The first control character of ``text`` (NUL, bell, line break...), or None.

    Public: ``accounts.imports`` refuses a cell holding one.
    """
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
