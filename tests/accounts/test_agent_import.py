"""CSV import of agents: what ministries export, per-row outcomes, all-or-nothing, idempotent."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts.import_csv import ImportFileError
from accounts.imports import agent_import_apply, agent_import_plan
from accounts.models import Agent
from audit.actor import Actor
from audit.models import AuditEvent
from licensing.services import NoFreeSeat
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db

FRENCH = (
    "Courriel;Prénom;Nom;Matricule;Unité\r\n"
    "anne.leroy@alpha.gouv.fr;Anne;Leroy;A-1;DSI\r\n"
    "Bruno.Morel@alpha.gouv.fr;Bruno;Morel;A-2;Cabinet\r\n"
)


def plan(world, text, encoding="utf-8", **kw):
    return agent_import_plan(ministry=world.a, raw=text.encode(encoding), **kw)


def admin(world):
    return Actor(user=world.admin_a, label="admin")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "cp1252"])
def test_french_headers_semicolons_and_every_encoding(world, encoding):
    """UTF-8 with or without BOM and Windows-1252, ';' detected, French headers mapped."""
    result = plan(world, FRENCH, encoding)
    assert result.delimiter == ";"
    assert result.counts["create"] == 2 and result.counts["error"] == 0
    assert result.rows[0].values == {
        "email": "anne.leroy@alpha.gouv.fr",
        "given_name": "Anne",
        "usual_name": "Leroy",
        "external_id": "A-1",
        "organizational_unit": "DSI",
    }
    assert result.rows[1].email == "bruno.morel@alpha.gouv.fr"


def test_apply_creates_then_a_second_apply_changes_nothing(world):
    """Importing the same file twice: created once, then all unchanged and no write."""
    agent_import_apply(actor=admin(world), plan=plan(world, FRENCH))
    assert Agent.objects.get(email="anne.leroy@alpha.gouv.fr").ministry == world.a
    events = AuditEvent.objects.count()
    again = plan(world, FRENCH)
    assert again.counts["unchanged"] == 2
    agent_import_apply(actor=admin(world), plan=again)
    assert AuditEvent.objects.count() == events


def test_each_bad_row_is_an_error_with_line_column_and_reason(world):
    """Wrong domain, bad email, duplicates, another ministry's agent, ragged row."""
    AgentFactory(email="moved@alpha.gouv.fr", ministry=world.b, imported=True)
    text = (
        "email,given name,usual name,external id\n"
        "ok@alpha.gouv.fr,Ok,Fine,X-1\n"  # line 2: create
        "someone@bravo.gouv.fr,A,B,X-2\n"  # 3: not the ministry's domain
        "not-an-email,A,B,X-3\n"  # 4: not an email
        "ok@alpha.gouv.fr,Again,Dup,X-4\n"  # 5: duplicate email
        "other@alpha.gouv.fr,A,B,X-1\n"  # 6: duplicate external id
        "moved@alpha.gouv.fr,A,B,X-6\n"  # 7: an agent of another ministry
        "ragged@alpha.gouv.fr,A\n"  # 8: ragged
    )
    result = plan(world, text)
    errors = {r.line: (r.column, r.reason) for r in result.rows if r.action == "error"}
    assert result.delimiter == ","
    assert result.counts == {"create": 1, "update": 0, "unchanged": 0, "deactivate": 0, "error": 6}
    assert "not one of the ministry's" in errors[3][1]
    assert "not an email address" in errors[4][1]
    assert errors[5] == ("email", "Already on line 2 of this file.")
    assert errors[6] == ("external_id", "Already on line 2 of this file.")
    assert errors[7] == ("email", "This agent belongs to another ministry.")
    assert "fields where the header has" in errors[8][1]
    assert result.errors_csv().splitlines()[0] == (
        "line,column,reason,email,given_name,usual_name,external_id,organizational_unit"
    )


def test_rows_in_error_are_left_out_and_valid_rows_applied(world):
    """Applying writes the valid rows only."""
    text = "email\ngood@alpha.gouv.fr\nbad@elsewhere.fr\n"
    agent_import_apply(actor=admin(world), plan=plan(world, text))
    assert Agent.objects.filter(email="good@alpha.gouv.fr").exists()
    assert not Agent.objects.filter(email="bad@elsewhere.fr").exists()


def test_updates_reactivations_and_deactivate_missing(world):
    """Changed names update; a listed leaver comes back; the unlisted are deactivated."""
    world.agent_a.is_active = False
    world.agent_a.deactivated_at = world.agent_a.created_at
    world.agent_a.save()
    text = f"email,usual name\n{world.agent_a.email},Nouveau\n{world.admin_a.email},X\n"
    result = plan(world, text, deactivate_missing=True)
    assert result.counts["update"] == 2
    assert result.counts["deactivate"] == 1  # the auditor of A, not listed
    agent_import_apply(actor=admin(world), plan=result)
    assert Agent.objects.get(pk=world.agent_a.pk).is_active
    assert Agent.objects.get(pk=world.agent_a.pk).usual_name == "Nouveau"
    assert not Agent.objects.get(pk=world.auditor_a.pk).is_active


def test_not_enough_seats_writes_nothing(world):
    """When the valid rows need more seats than are free, nothing is written at all."""
    active = Agent.objects.filter(ministry=world.a, is_active=True).count()
    world.a.licence_pools.update(seats=active + 1)
    text = "email\none@alpha.gouv.fr\ntwo@alpha.gouv.fr\n"
    before = Agent.objects.count()
    with pytest.raises(NoFreeSeat):
        agent_import_apply(actor=admin(world), plan=plan(world, text))
    assert Agent.objects.count() == before


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"nom;prenom\nx;y\n", "No email column"),
        (b"\xff\xfe\x00e\x00m\x00a\x00i\x00l", "looks like UTF-16"),
    ],
)
def test_unreadable_files_are_refused_as_a_whole(world, raw, message):
    """Empty file, no email column, wrong encoding: one clear message, nothing planned."""
    with pytest.raises(ImportFileError, match=message):
        agent_import_plan(ministry=world.a, raw=raw)


def test_size_limit_is_a_setting(world, settings):
    """A file over AGENT_IMPORT_MAX_BYTES is refused with its size."""
    settings.AGENT_IMPORT_MAX_BYTES = 1_000_000
    with pytest.raises(ImportFileError, match="limit is 1 MB"):
        agent_import_plan(ministry=world.a, raw=b"email\n" + b"x@alpha.gouv.fr\n" * 80_000)


def test_other_ministry_admins_cannot_apply(world):
    """B's admin cannot import into A."""
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        agent_import_apply(
            actor=Actor(user=world.admin_b, label="b"),
            plan=plan(world, "email\nnew@alpha.gouv.fr\n"),
        )
    assert not Agent.objects.filter(email="new@alpha.gouv.fr").exists()


def test_command_previews_then_applies(world, tmp_path):
    """manage.py import_agents: --dry-run writes nothing; then it applies; bad input fails."""
    path = tmp_path / "agents.csv"
    path.write_text(FRENCH, encoding="cp1252")
    out = StringIO()
    call_command(
        "import_agents",
        str(path),
        "--ministry",
        "alpha",
        "--dry-run",
        stdout=out,
        stderr=StringIO(),
    )
    assert "create: 2" in out.getvalue() and "Dry run" in out.getvalue()
    assert not Agent.objects.filter(email="anne.leroy@alpha.gouv.fr").exists()
    call_command(
        "import_agents", str(path), "--ministry", "alpha", stdout=StringIO(), stderr=StringIO()
    )
    assert Agent.objects.filter(email="anne.leroy@alpha.gouv.fr").exists()
    with pytest.raises(CommandError, match="Unknown ministry"):
        call_command("import_agents", str(path), "--ministry", "nowhere", stdout=StringIO())


def test_an_agent_on_a_row_in_error_is_not_deactivated(world):
    """--deactivate-missing spares an agent whose row has an error: they are in the file."""
    AgentFactory(email="other@alpha.gouv.fr", ministry=world.a, external_id="TAKEN", imported=True)
    text = f"email,external id\n{world.agent_a.email},TAKEN\n"
    result = plan(world, text, deactivate_missing=True)
    assert [r.action for r in result.rows if r.email == world.agent_a.email] == ["error"]
    assert world.agent_a.email not in {r.email for r in result.rows if r.action == "deactivate"}
