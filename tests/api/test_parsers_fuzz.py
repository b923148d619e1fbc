"""Hostile input for the two parsers that read what outsiders send: the agents' CSV
import (accounts/import_csv.py, accounts/imports.py) and SCIM filters (scim/filters.py).

Whatever the bytes or the string, each parser either does its job or refuses with
its own error and a message saying what is wrong; it never crashes, and a refused
or partly wrong import writes nothing it should not.
"""

import codecs
import os
import string

import pytest
from django.db import transaction
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from scim2_models import InvalidFilterException

from accounts.import_csv import FIELDS, ImportFileError
from accounts.imports import agent_import_apply, agent_import_plan
from accounts.models import Agent
from audit.actor import Actor
from audit.models import AuditEvent
from licensing.services import NoFreeSeat
from scim.filters import filter_compile
from scim.models import DirectoryGroup

pytestmark = [pytest.mark.django_db, pytest.mark.fuzz]

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    database=None,
    derandomize=os.environ.get("FUZZ_RANDOM") != "1",
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
FORMULA_STARTS = ("=", "+", "-", "@")


# -- The CSV import ---------------------------------------------------------------

HEADER_NAMES = ["email", "Courriel", "Prénom", "nom", "Matricule", "Unité", "service", "x"]
# Cells a hostile or careless export may hold: formulas, quotes, separators, control
# characters, long and very long text, look-alike emails.
CELLS = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            "anne@alpha.gouv.fr",
            "ANNE@ALPHA.GOUV.FR",
            "bruno@bravo.gouv.fr",
            '=HYPERLINK("http://evil";"x")',
            "+33 1 23",
            "-2+3",
            "@SUM(A1)",
            '"quoted, with; separators"',
            'un"closed',
            "a\x00b@alpha.gouv.fr",
            "nul\x00",
            "tab\there",
            "line\nbreak",
            "\ufeffbom@alpha.gouv.fr",
            "é" * 151,
        ]
    ),
    st.integers(1, 300).map(lambda n: f"long-{'x' * n}@alpha.gouv.fr"),
)


@st.composite
def csv_exports(draw, readable=False):
    """Bytes shaped like an export: header, rows, a delimiter, an encoding, maybe a BOM,
    maybe ragged rows, maybe one huge field. ``readable``: what a ministry's export
    would be (an email column, a usual encoding), whatever its cells hold."""
    delimiter = draw(st.sampled_from([",", ";"] if readable else [",", ";", "\t", "|"]))
    header = draw(st.lists(st.sampled_from(HEADER_NAMES), min_size=1, max_size=6))
    if readable:
        header = ["email", *header]
    rows = draw(
        st.lists(
            st.lists(CELLS, min_size=max(len(header) - 1, 0), max_size=len(header) + 1),
            max_size=8,
        )
    )
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    quote = draw(st.booleans())

    def cell(value):
        if quote or delimiter in value or '"' in value or "\n" in value:
            return '"' + value.replace('"', '""') + '"'
        return value

    lines = [delimiter.join(cell(v) for v in line) for line in [header, *rows]]
    if not readable and draw(st.booleans()):
        lines.append('"' + "y" * draw(st.sampled_from([200_000, 140_000])))  # unclosed, huge
    text = newline.join(lines) + newline
    encodings = ["utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16"]
    encoding = draw(st.sampled_from(encodings[:3] if readable else encodings))
    raw = text.encode(encoding, errors="replace")
    if not readable and draw(st.booleans()) and not raw.startswith(codecs.BOM_UTF8):
        raw = codecs.BOM_UTF8 + raw
    return raw


def written():
    """What a refused or dry run must leave alone."""
    return (
        sorted(Agent.objects.values_list("email", "given_name", "usual_name", "is_active")),
        AuditEvent.objects.count(),
    )


def assert_spreadsheet_safe(errors_csv: str):
    """The errors file is opened in a spreadsheet: no cell of it starts a formula."""
    import csv
    import io

    for row in csv.reader(io.StringIO(errors_csv)):
        for value in row:
            assert not value.startswith(FORMULA_STARTS), value


def _plan_or_refusal(world, raw, delimiter=None):
    try:
        return agent_import_plan(ministry=world.a, raw=raw, delimiter=delimiter), None
    except ImportFileError as exc:
        return None, exc


@FUZZ
@given(raw=st.one_of(st.binary(max_size=600), csv_exports()))
@example(raw=b"email\n" + b'"' + b"x" * 200_000)  # unclosed quote swallowing the file
@example(raw=b"email,nom\nanne@alpha.gouv.fr,Le\x00roy\n")
@example(raw=b"email\n" + b"a" * 5000 + b"\x00@alpha.gouv.fr\n")
@example(raw=b"email,matricule\nanne@alpha.gouv.fr,A\x00\n")
@example(raw=("email\n" + "x" * 250 + "@alpha.gouv.fr\n").encode())
def test_the_import_plans_or_refuses_the_file_with_a_message(world, raw):
    """Any bytes: a plan whose errors name line, column and reason, or ImportFileError
    with a message; planning writes nothing."""
    before = written()
    plan, refusal = _plan_or_refusal(world, raw)
    assert written() == before
    if refusal is not None:
        assert str(refusal).strip(), "a refusal says why"
        return
    for row in plan.rows:
        assert row.action in ("create", "update", "unchanged", "deactivate", "error")
        if row.action == "error":
            assert row.line > 0 and row.reason
    assert_spreadsheet_safe(plan.errors_csv())


@FUZZ
@given(raw=csv_exports(readable=True))
@example(raw=b"email,nom\nanne@alpha.gouv.fr,Le\x00roy\n")
@example(raw=b"email,prenom\nanne@alpha.gouv.fr,=1+1\n")
@example(raw=("email,prenom\nanne@alpha.gouv.fr," + "é" * 151 + "\n").encode())
def test_applying_writes_the_valid_rows_or_nothing(world, raw):
    """Applying a plan writes exactly its valid rows, or refuses (seats) and writes
    nothing; no database error escapes, whatever the cells held."""
    plan, refusal = _plan_or_refusal(world, raw)
    assume(refusal is None)
    before = written()
    try:
        with transaction.atomic():
            agent_import_apply(actor=Actor(user=world.admin_a, label="fuzz"), plan=plan)
            applied = True
    except NoFreeSeat:
        applied = False
    if not applied:
        assert written() == before
        return
    for row in plan.rows:
        if row.action in ("create", "update"):
            agent = Agent.objects.get(email=row.email)
            for name in FIELDS:
                if name in row.values:
                    assert getattr(agent, name) == row.values[name]
    with transaction.atomic():  # the same file again changes nothing
        again = agent_import_plan(ministry=world.a, raw=raw)
        assert again.counts["create"] == again.counts["update"] == 0
        transaction.set_rollback(True)


def test_an_unclosed_quote_is_refused_with_its_line(world):
    """A quote left open swallows the rest of the file: the refusal says where."""
    raw = b'email,nom\nanne@alpha.gouv.fr,Leroy\nbruno@alpha.gouv.fr,"Morel\n' + b"x" * 200_000
    with pytest.raises(ImportFileError, match="Line 3 cannot be read"):
        agent_import_plan(ministry=world.a, raw=raw)


def test_control_characters_are_a_row_error_naming_the_column(world):
    """A NUL or other control character in a cell is that row's error, not a crash."""
    raw = (
        b"email,nom,matricule\nanne@alpha.gouv.fr,Le\x00roy,A-1\nbruno@alpha.gouv.fr,Morel,B\x07\n"
    )
    plan = agent_import_plan(ministry=world.a, raw=raw)
    errors = {row.line: (row.column, row.reason) for row in plan.rows if row.action == "error"}
    assert errors[2][0] == "usual_name" and "U+0000" in errors[2][1]
    assert errors[3][0] == "external_id" and "U+0007" in errors[3][1]


def test_formulas_in_cells_are_neutralised_in_the_errors_file(world):
    """A formula in a row in error comes back in the errors file as text, not a formula."""
    raw = b'email,prenom\n=1+1,=HYPERLINK("http://x")\n'
    plan = agent_import_plan(ministry=world.a, raw=raw)
    assert plan.counts["error"] == 1
    lines = plan.errors_csv().splitlines()
    assert "'=1+1" in lines[1] and "'=HYPERLINK" in lines[1]


def test_an_email_longer_than_the_column_is_a_row_error(world):
    """An address longer than 254 characters is refused on its row."""
    raw = ("email\n" + "x" * 250 + "@alpha.gouv.fr\n").encode()
    plan = agent_import_plan(ministry=world.a, raw=raw)
    assert plan.counts["error"] == 1
    assert plan.rows[0].column == "email"


# -- SCIM filters -----------------------------------------------------------------

USER_ATTRIBUTES = [
    "userName",
    "externalId",
    "displayName",
    "name.givenName",
    "name.familyName",
    "emails",
    "emails.value",
    "emails.type",
    "active",
    "meta.created",
    "meta.lastModified",
    "id",
    "groups",
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    "title",
    "nickName",
    "x",
]
OPERATORS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ", "pr", "xx"]
VALUES = st.one_of(
    st.text(max_size=12).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'),
    st.sampled_from(
        [
            "true",
            "false",
            "null",
            "42",
            "-1.5e3",
            '"2026-01-01T00:00:00Z"',
            '"9999-12-31T23:59:59-14:00"',
            '"0001-01-01T00:00:00+14:00"',
            '"not a date"',
            '"a\\u0000b"',
            '"\x00"',
            '"unterminated',
            '"00000000-0000-0000-0000-000000000000"',
        ]
    ),
)


@st.composite
def grammar_shaped(draw, depth=0):
    """Strings that follow the filter grammar closely, and sometimes break it."""
    attribute = draw(st.sampled_from(USER_ATTRIBUTES))
    operator = draw(st.sampled_from(OPERATORS))
    term = f"{attribute} pr" if operator == "pr" else f"{attribute} {operator} {draw(VALUES)}"
    if depth < 2:
        shape = draw(st.integers(0, 5))
        if shape == 1:
            joiner = draw(st.sampled_from(["and", "or", "AND", "xor"]))
            term = f"{term} {joiner} {draw(grammar_shaped(depth + 1))}"
        elif shape == 2:
            term = f"not ({draw(grammar_shaped(depth + 1))})"
        elif shape == 3:
            term = f"emails[{draw(grammar_shaped(depth + 1))}]"
        elif shape == 4:
            term = "(" * draw(st.integers(0, 3)) + term + ")" * draw(st.integers(0, 3))
    return term


FILTERS = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=string.printable, max_size=40),
    grammar_shaped(),
)


@FUZZ
@given(text=FILTERS, resource=st.sampled_from(["user", "group"]))
@example(text='userName eq "a\x00b"', resource="user")
@example(text='displayName co "\\u0000"', resource="user")  # an escaped NUL
@example(text='meta.created gt "9999-12-31T23:59:59-14:00"', resource="user")
@example(text='meta.lastModified lt "0001-01-01T00:00:00+14:00"', resource="group")
@example(text='emails[type eq "work" and value co "@"]', resource="user")
@example(text='displayName sw "\x00"', resource="group")
def test_a_filter_compiles_and_runs_or_is_an_invalid_filter(world, text, resource):
    """Any string: a query that runs, or InvalidFilterException (scimType
    invalidFilter) with a detail; never another exception."""
    try:
        condition = filter_compile(text, resource)
    except InvalidFilterException as exc:
        assert exc.to_error().scim_type == "invalidFilter"
        assert exc.to_error().detail
        return
    rows = DirectoryGroup.objects if resource == "group" else Agent.objects
    if resource == "user":
        from scim.views import USER

        rows = USER.queryset(type("Token", (), {"ministry_id": world.a.pk})())
    with transaction.atomic():
        list(rows.filter(condition)[:5])


@pytest.fixture
def scim_client(world):
    from django.test import Client

    from scim.tokens import directory_token_issue

    _, clear = directory_token_issue(actor=Actor.system("tests"), ministry=world.a)
    return Client(HTTP_AUTHORIZATION=f"Bearer {clear}")


@pytest.mark.parametrize(
    "text",
    [
        'userName eq "a\x00b"',
        'externalId eq "\\u0000"',
        "userName eq",
        '(userName eq "x"',
        'nickName eq "boss"',
        'meta.created gt "not a date"',
        'active eq "yes"',
        'emails[value co "@" and type eq]',
        "x" * 5000,
    ],
)
@pytest.mark.parametrize("how", ["query", "search"])
def test_the_scim_endpoint_answers_400_invalid_filter(scim_client, text, how):
    """Through HTTP, a filter that cannot run is a 400 invalidFilter, never a 500."""
    scim_client.raise_request_exception = False
    if how == "query":
        response = scim_client.get("/scim/v2/Users", {"filter": text})
    else:
        response = scim_client.post(
            "/scim/v2/Users/.search",
            {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": text},
            content_type="application/scim+json",
        )
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert body["scimType"] == "invalidFilter", body
    assert body["detail"]


def test_an_upload_with_nul_and_formulas_ends_done_with_a_safe_errors_file(
    world, django_capture_on_commit_callbacks
):
    """Through the API (the task stores the errors file): a NUL and a formula in the
    cells make row errors, the job ends done, the errors file is stored and safe."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from accounts.models import AgentImportJob
    from tests.support.clients import client_as

    raw = b"email,nom\nanne@alpha.gouv.fr,Le\x00roy\n=cmd|' /C calc'!A0,@SUM(A1)\n"
    with django_capture_on_commit_callbacks(execute=True):  # the task runs (eager)
        response = client_as(world.admin_a).post(
            "/api/v1/agent-imports/",
            {"ministry": "alpha", "file": SimpleUploadedFile("agents.csv", raw)},
            format="multipart",
        )
    assert response.status_code == 202, response.content
    job = AgentImportJob.objects.get(pk=response.json()["id"])
    assert job.state == AgentImportJob.State.DONE, job.failure
    assert job.counts["error"] == 2
    assert "\x00" not in job.errors_csv
    assert_spreadsheet_safe(job.errors_csv)
