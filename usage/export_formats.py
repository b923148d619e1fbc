"""The three export formats, each streamed chunk by chunk in constant memory: CSV
(a BOM and the delimiter French Excel expects), JSON Lines, and XLSX (rows spooled to
a temporary file as they are written). They know columns and rows, not datasets:
``usage.exports`` chooses the rows.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import xlsxwriter

XLSX_MAX_ROWS = 1_048_576  # Excel's limit per sheet, header included


@dataclass(frozen=True)
class Column:
    """One exported column: its name (the header) and the kind of its values."""

    name: str
    kind: str = "text"  # text, int, date, or timestamp (ISO 8601 text, UTC)


def csv_body(columns: Iterable[Column], chunks: Iterable[list], *, delimiter: str):
    """UTF-8 CSV with a byte-order mark (so Excel reads accents), CRLF line ends."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow([c.name for c in columns])
    yield ("\ufeff" + buffer.getvalue()).encode("utf-8")
    for chunk in chunks:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(chunk)
        yield buffer.getvalue().encode("utf-8")


def _json_value(value):
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def jsonl_body(columns: Iterable[Column], chunks: Iterable[list]):
    """One JSON object per line, keys in column order."""
    names = [c.name for c in columns]
    dumps = json.JSONEncoder(ensure_ascii=False, default=_json_value).encode
    for chunk in chunks:
        yield "".join([dumps(dict(zip(names, row, strict=True))) + "\n" for row in chunk]).encode(
            "utf-8"
        )


def _timestamp_cell(value):
    return datetime.fromisoformat(value).replace(tzinfo=None) if value else None


def xlsx_body(columns: tuple[Column, ...], chunks: Iterable[list], *, sheet: str):
    """An XLSX workbook built in constant memory into a temporary file, then streamed.

    A zip archive's directory comes last, so nothing can be sent before every row is
    written; ``constant_memory`` keeps one row in memory at a time (rows go to the
    temporary file as they are written). Timestamps become real date cells (UTC);
    strings are never read as formulas or links. Past Excel's 1,048,576 rows per
    sheet, rows continue on a new sheet.
    """

    with tempfile.TemporaryFile(prefix="export-", suffix=".xlsx") as file:
        workbook = xlsxwriter.Workbook(
            file,
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
            },
        )
        formats = {
            "date": workbook.add_format({"num_format": "yyyy-mm-dd"}),
            "timestamp": workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"}),
        }
        header = workbook.add_format({"bold": True})
        kinds = [c.kind for c in columns]
        worksheet = None
        sheets = 0
        row_number = XLSX_MAX_ROWS
        for chunk in chunks:
            for row in chunk:
                if row_number >= XLSX_MAX_ROWS:
                    sheets += 1
                    worksheet = workbook.add_worksheet(
                        sheet if sheets == 1 else f"{sheet} {sheets}"
                    )
                    worksheet.write_row(0, 0, [c.name for c in columns], header)
                    row_number = 1
                for col, (kind, value) in enumerate(zip(kinds, row, strict=True)):
                    if value is None or value == "":
                        continue
                    if kind == "timestamp":
                        worksheet.write_datetime(
                            row_number, col, _timestamp_cell(value), formats[kind]
                        )
                    elif kind == "date":
                        worksheet.write_datetime(row_number, col, value, formats[kind])
                    elif kind == "int":
                        worksheet.write_number(row_number, col, value)
                    else:
                        worksheet.write_string(row_number, col, str(value))
                row_number += 1
        if worksheet is None:
            workbook.add_worksheet(sheet).write_row(0, 0, [c.name for c in columns], header)
        workbook.close()
        file.seek(0)
        while block := file.read(64 * 1024):
            yield block
