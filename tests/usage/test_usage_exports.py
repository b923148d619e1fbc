"""Usage exports: totals, formats, streaming, audit, parameters and tenant scope."""

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from unittest import mock

import openpyxl
import pytest
from django.db import connection
from django.db.models import Sum
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext

from accounts.models import Role
from audit.models import AuditEvent
from rooms.models import ParticipantSession
from tests.factories import DailyUsageFactory
from tests.support.clients import client_as, client_with_token
from tests.usage_scenes import october_sessions, october_usage
from usage.models import DailyUsage
from usage.reports import monthly_report_content

pytestmark = pytest.mark.django_db

OCT = date(2026, 10, 1)
PERIOD = "from=2026-10-01&to=2026-10-31"


def body(response) -> bytes:
    assert isinstance(response, StreamingHttpResponse), response
    return b"".join(response.streaming_content)


def csv_rows(response, delimiter=";") -> list[dict]:
    raw = body(response)
    assert raw.startswith(b"\xef\xbb\xbf"), "UTF-8 byte-order mark for Excel"
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig")), delimiter=delimiter))


def export(user, query: str):
    return client_as(user).get(f"/api/v1/exports/?{query}")


def test_session_export_totals_equal_the_sessions_and_name_nobody(world):
    """The CSV's durations add up to the ORM's sum; agents appear only as a pseudonym."""
    october_sessions(world)
    rows = sorted(
        csv_rows(export(world.auditor_a, f"dataset=sessions&{PERIOD}")),
        key=lambda r: r["joined_at"],
    )
    expected = ParticipantSession.objects.filter(
        ministry=world.a, joined_at__date__lte=date(2026, 10, 31)
    ).aggregate(s=Sum("duration_seconds"))["s"]
    assert len(rows) == 6
    assert sum(int(r["duration_seconds"]) for r in rows) == expected == 60 * 21
    assert {r["ministry"] for r in rows} == {"alpha"}
    assert rows[0]["joined_at"] == "2026-10-02T08:00:00Z"
    assert rows[0]["room"] == "abc-defg-hij"
    refs = {r["agent_ref"] for r in rows}
    assert len(refs) == 1 and len(refs.pop()) == 16
    raw = body(export(world.auditor_a, f"dataset=sessions&{PERIOD}")).decode("utf-8-sig")
    assert world.agent_a.email not in raw and str(world.agent_a.pk) not in raw


def test_csv_header_bom_and_chosen_delimiter(world):
    """Semicolon by default (French Excel); a comma when asked."""
    october_usage(world)
    semicolon = body(export(world.auditor_a, PERIOD)).decode("utf-8-sig")
    assert semicolon.startswith("period_start;period_end;ministry;organizational_unit;meetings")
    comma = export(world.auditor_a, f"{PERIOD}&delimiter=,")
    assert comma["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in comma["Content-Disposition"]
    assert body(comma).decode("utf-8-sig").startswith("period_start,period_end,ministry,")


@pytest.mark.parametrize("granularity,periods", [("day", 31), ("week", 5), ("month", 1)])
def test_usage_totals_per_period_equal_the_daily_rows(world, granularity, periods):
    """Summing day, week or month periods gives the daily roll-ups' sum."""
    october_usage(world)
    rows = csv_rows(export(world.admin_a, f"{PERIOD}&granularity={granularity}"))
    daily = DailyUsage.objects.filter(ministry=world.a, organizational_unit="")
    assert len(rows) == periods
    assert sum(int(r["meetings"]) for r in rows) == daily.aggregate(s=Sum("meetings"))["s"]
    assert (
        sum(int(r["participant_minutes"]) for r in rows)
        == daily.aggregate(s=Sum("participant_minutes"))["s"]
    )
    assert {r["organizational_unit"] for r in rows} == {""}
    if granularity == "week":
        # 2026-10-01 is a Thursday: the first week is clipped to the period.
        assert (rows[0]["period_start"], rows[0]["period_end"]) == ("2026-10-01", "2026-10-04")
        assert (rows[1]["period_start"], rows[1]["period_end"]) == ("2026-10-05", "2026-10-11")
        assert rows[-1]["period_end"] == "2026-10-31"
    if granularity == "month":
        assert rows[0]["period_start"] == "2026-10-01" and rows[0]["period_end"] == "2026-10-31"
        assert rows[0]["agents_in_meetings_max_day"] == "7"
        assert rows[0]["average_meeting_seconds"] == "600"


def test_units_one_row_per_unit_or_a_single_unit(world):
    """``unit=*`` gives every unit's rows; a unit name gives that unit alone."""
    october_usage(world)
    every = csv_rows(export(world.national_auditor, f"{PERIOD}&granularity=month&unit=*"))
    assert {(r["ministry"], r["organizational_unit"]) for r in every} == {
        ("alpha", "Bureau alpha"),
        ("bravo", "Bureau bravo"),
    }
    one = csv_rows(export(world.national_auditor, f"{PERIOD}&granularity=month&unit=Bureau bravo"))
    assert [(r["ministry"], r["meetings"], r["participant_minutes"]) for r in one] == [
        ("bravo", "31", str(31 * 15))
    ]


def test_xlsx_opens_with_the_same_rows_as_csv(world):
    """The workbook reads back (openpyxl) with the CSV's rows, typed."""
    october_sessions(world)
    response = export(world.auditor_a, f"dataset=sessions&format=xlsx&{PERIOD}")
    assert response["Content-Type"].endswith("spreadsheetml.sheet")
    workbook = openpyxl.load_workbook(io.BytesIO(body(response)), read_only=True)
    sheet = workbook["sessions"]
    values = list(sheet.iter_rows(values_only=True))
    rows = csv_rows(export(world.auditor_a, f"dataset=sessions&{PERIOD}"))
    assert list(values[0]) == list(rows[0].keys())
    assert len(values) == len(rows) + 1
    assert sum(v[2] for v in values[1:]) == sum(int(r["duration_seconds"]) for r in rows)
    assert min(v[0] for v in values[1:]) == datetime(2026, 10, 2, 8, 0)
    assert [v[7] for v in values[1:]] == [r["agent_ref"] for r in rows]


def test_xlsx_usage_export_has_dates_and_numbers(world):
    """Usage periods are date cells and the figures numbers."""
    october_usage(world)
    response = export(world.auditor_a, f"format=xlsx&{PERIOD}&granularity=month")
    sheet = openpyxl.load_workbook(io.BytesIO(body(response)))["usage"]
    assert sheet["A2"].value == datetime(2026, 10, 1) and sheet["E2"].value == sum(range(1, 32))


def test_jsonl_lines_parse_and_add_up(world):
    """Every line is a JSON object; totals match the sessions."""
    october_sessions(world)
    response = export(world.national_auditor, f"dataset=sessions&format=jsonl&{PERIOD}")
    lines = body(response).decode().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 12
    assert sum(r["duration_seconds"] for r in records) == 2 * 60 * 21
    assert set(records[0]) == {
        "joined_at",
        "left_at",
        "duration_seconds",
        "ministry",
        "organizational_unit",
        "meeting",
        "room",
        "agent_ref",
    }


def test_export_streams_through_a_server_side_cursor_and_audits_first(world):
    """Nothing is read before the body is consumed, and then through a chunked cursor;
    the audit event is already written."""
    october_sessions(world)
    before = AuditEvent.objects.count()
    with (
        mock.patch.object(connection, "chunked_cursor", wraps=connection.chunked_cursor) as chunked,
        CaptureQueriesContext(connection) as queries,
    ):
        response = export(world.auditor_a, f"dataset=sessions&{PERIOD}")
        assert isinstance(response, StreamingHttpResponse)
        assert not any("rooms_participantsession" in q["sql"] for q in queries.captured_queries)
        assert not chunked.called
        event = AuditEvent.objects.get(sequence=AuditEvent.objects.count())
        assert AuditEvent.objects.count() == before + 1
        assert event.action == "usage.export"
        assert event.data == {
            "dataset": "sessions",
            "format": "csv",
            "filters": {
                "ministry": None,
                "unit": "",
                "from": "2026-10-01",
                "to": "2026-10-31",
                "granularity": "day",
            },
            "rows": "streamed",
        }
        assert event.actor_id == world.auditor_a.pk
        body(response)
        assert chunked.called


def test_sessions_are_fetched_in_chunks(world, monkeypatch):
    """Rows come through fetchmany in chunks, never the whole result at once."""
    import usage.exports

    october_sessions(world)
    monkeypatch.setattr(usage.exports, "EXPORT_CHUNK_ROWS", 2)
    seen = []
    original = usage.exports.csv_body

    def spy(columns, chunks, delimiter):
        def counted():
            for chunk in chunks:
                seen.append(len(chunk))
                yield chunk

        return original(columns, counted(), delimiter=delimiter)

    monkeypatch.setattr(usage.exports, "csv_body", spy)
    monkeypatch.setattr(
        usage.exports,
        "queryset_chunks",
        lambda qs, chunk_size=None, _f=usage.exports.queryset_chunks: _f(qs, 2),
    )
    rows = csv_rows(export(world.auditor_a, f"dataset=sessions&{PERIOD}"))
    assert len(rows) == 6 and seen == [2, 2, 2]


def test_pseudonymised_sessions_and_formula_like_units(world):
    """A pseudonymised session has no agent reference; a unit that looks like a formula
    is quoted with an apostrophe in CSV."""
    october_sessions(world, per_ministry=2)
    ParticipantSession.objects.filter(participant_sid="PA_alpha_0").update(
        pseudonymised_at=datetime(2026, 11, 1, tzinfo=UTC), organizational_unit="=HYPERLINK(1)"
    )
    rows = sorted(
        csv_rows(export(world.auditor_a, f"dataset=sessions&{PERIOD}")),
        key=lambda r: r["joined_at"],
    )
    assert [r["agent_ref"] == "" for r in rows] == [True, False]
    assert rows[0]["organizational_unit"] == "'=HYPERLINK(1)"
    lines = body(export(world.auditor_a, f"dataset=sessions&format=jsonl&{PERIOD}")).splitlines()
    first = min((json.loads(line) for line in lines), key=lambda r: r["joined_at"])
    assert first["agent_ref"] is None and first["organizational_unit"] == "=HYPERLINK(1)"


def test_formula_like_units_in_the_usage_dataset(world):
    """In the usage dataset too, a unit that looks like a formula is quoted with an
    apostrophe in CSV, and left as it is in JSON Lines."""
    october_usage(world)
    DailyUsage.objects.filter(organizational_unit="Bureau alpha").update(
        organizational_unit="=HYPERLINK(1)"
    )
    query = f"dataset=usage&granularity=month&unit=*&{PERIOD}"
    rows = csv_rows(export(world.auditor_a, query))
    assert [r["organizational_unit"] for r in rows] == ["'=HYPERLINK(1)"]
    assert rows[0]["meetings"] == "31"
    lines = body(export(world.auditor_a, f"{query}&format=jsonl")).splitlines()
    assert [json.loads(line)["organizational_unit"] for line in lines] == ["=HYPERLINK(1)"]


@pytest.mark.parametrize(
    "query,field",
    [
        ("format=pdf&" + PERIOD, "format"),
        ("dataset=agents&" + PERIOD, "dataset"),
        ("granularity=year&" + PERIOD, "granularity"),
        ("delimiter=|&" + PERIOD, "delimiter"),
        ("from=2026-10-31&to=2026-10-01", "to"),
        ("from=2026-13-01&to=2026-10-01", "from"),
        ("to=2026-10-01", "from"),
        ("from=2000-01-01&to=2026-10-31", "to"),
    ],
)
def test_bad_parameters_answer_400_naming_the_field_and_write_nothing(world, query, field):
    """A wrong parameter gets a 400 naming it; no audit event, no file."""
    before = AuditEvent.objects.count()
    response = export(world.auditor_a, query)
    assert response.status_code == 400, response.content
    assert field in response.json()
    assert AuditEvent.objects.count() == before


def test_limit_of_days_comes_from_settings(world, settings):
    """EXPORT_MAX_DAYS bounds the period."""
    settings.EXPORT_MAX_DAYS = 31
    assert export(world.auditor_a, PERIOD).status_code == 200
    response = export(world.auditor_a, "from=2026-10-01&to=2026-11-01")
    assert response.status_code == 400 and "31" in response.json()["to"][0]


def test_auditor_of_a_sees_only_a_and_gets_404_for_b(world):
    """An auditor of A: B is not found (nothing audited); unfiltered exports hold A only."""
    october_usage(world)
    october_sessions(world)
    before = AuditEvent.objects.count()
    for query in (f"ministry=bravo&{PERIOD}", f"ministry=nowhere&{PERIOD}"):
        assert export(world.auditor_a, query).status_code == 404
    assert AuditEvent.objects.count() == before
    usage = csv_rows(export(world.auditor_a, f"{PERIOD}&unit=*"))
    sessions = csv_rows(export(world.auditor_a, f"dataset=sessions&{PERIOD}"))
    totals = csv_rows(export(world.auditor_a, PERIOD))
    assert {r["ministry"] for r in usage + sessions + totals} == {"alpha"}


def test_admin_of_a_exports_a_only(world):
    """A ministry admin exports their ministry, not another."""
    october_usage(world)
    assert export(world.admin_a, f"ministry=bravo&{PERIOD}").status_code == 404
    rows = csv_rows(export(world.admin_a, f"ministry=alpha&{PERIOD}&granularity=month"))
    assert [r["ministry"] for r in rows] == ["alpha"]


@pytest.mark.parametrize("who", ["national_auditor", "operator"])
def test_national_readers_see_every_ministry_and_national_rows(world, who):
    """National auditors and operators get A, B and the national rows (empty ministry)."""
    october_usage(world)
    october_sessions(world)
    user = getattr(world, who)
    rows = csv_rows(export(user, f"{PERIOD}&granularity=month"))
    assert [r["ministry"] for r in rows] == ["", "alpha", "bravo"]
    national = DailyUsage.objects.filter(ministry=None).aggregate(s=Sum("meetings"))["s"]
    assert int(rows[0]["meetings"]) == national
    sessions = csv_rows(export(user, f"dataset=sessions&{PERIOD}"))
    assert {r["ministry"] for r in sessions} == {"alpha", "bravo"}
    assert csv_rows(export(user, f"ministry=bravo&{PERIOD}&granularity=month"))[0]["ministry"] == (
        "bravo"
    )


@pytest.mark.parametrize("who", ["agent_a", "agent_b"])
def test_agents_without_a_role_may_not_export(world, who):
    """A plain agent gets 403 and nothing is audited."""
    before = AuditEvent.objects.count()
    assert export(getattr(world, who), PERIOD).status_code == 403
    assert AuditEvent.objects.count() == before


def test_anonymous_callers_may_not_export(world):
    """No credentials, no export."""
    assert client_as(None).get(f"/api/v1/exports/?{PERIOD}").status_code in (401, 403)


def test_api_token_of_an_auditor_exports_its_ministry(world):
    """An auditor token of A exports A's rows; B is not found; the event names the token."""
    october_usage(world)
    client = client_with_token(world.admin_a, world.a, Role.AUDITOR)
    assert client.get(f"/api/v1/exports/?ministry=bravo&{PERIOD}").status_code == 404
    response = client.get(f"/api/v1/exports/?{PERIOD}&format=jsonl&granularity=month")
    records = [json.loads(line) for line in body(response).splitlines()]
    assert [r["ministry"] for r in records] == ["alpha"]
    assert records[0]["period_start"] == "2026-10-01"
    event = AuditEvent.objects.filter(action="usage.export").get()
    assert event.token_id is not None and event.actor_id is None


def test_a_month_mean_meeting_length_is_the_same_in_the_export_and_the_report(world):
    """Both weigh each day's mean by its meetings and round the month's halves up (one
    rule): 0 s and 1 s over one meeting each give 1 s, not 0 s (half to even)."""
    for day, seconds in ((OCT, 0), (OCT + timedelta(days=1), 1)):
        DailyUsageFactory(ministry=world.a, day=day, meetings=1, average_meeting_seconds=seconds)
    rows = csv_rows(export(world.auditor_a, f"dataset=usage&granularity=month&{PERIOD}"))
    assert [r["average_meeting_seconds"] for r in rows] == ["1"]
    report = json.loads(monthly_report_content(ministry=world.a, month=OCT))
    assert report["totals"]["average_meeting_seconds"] == 1
