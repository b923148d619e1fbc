"""CSV import from the console: upload, preview, apply; other ministries see nothing."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Agent, AgentImportJob

pytestmark = pytest.mark.django_db
CSV = "Courriel;Prénom;Nom\nanne@alpha.gouv.fr;Anne;Leroy\nbad@nowhere.fr;X;Y\n".encode("cp1252")


def post_file(client, django_capture_on_commit_callbacks, ministry="alpha"):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(
            "/console/imports/",
            {"ministry": ministry, "file": SimpleUploadedFile("agents.csv", CSV)},
        )


def test_upload_preview_then_apply(client, world, django_capture_on_commit_callbacks):
    """The admin sees the preview in French, with the rows in error, then applies it."""
    client.force_login(world.admin_a)
    assert "Importer des agents" in client.get("/console/").content.decode()
    response = post_file(client, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "Aperçu" in page and 'id="import-counts"' in page
    assert "bad@nowhere.fr" in page
    assert not Agent.objects.filter(email="anne@alpha.gouv.fr").exists()
    with django_capture_on_commit_callbacks(execute=True):
        applied = client.post(response["Location"])
    assert applied.status_code == 302 and applied["Location"] != response["Location"]
    assert Agent.objects.filter(email="anne@alpha.gouv.fr", ministry=world.a).exists()
    assert AgentImportJob.objects.filter(apply=True, state="done").count() == 1


def test_other_ministry_and_auditors(client, world, django_capture_on_commit_callbacks):
    """B's admin cannot open A's import; an auditor has no upload form and cannot post."""
    client.force_login(world.admin_a)
    location = post_file(client, django_capture_on_commit_callbacks)["Location"]
    client.force_login(world.admin_b)
    assert client.get(location).status_code == 404
    assert client.post(location).status_code == 404
    client.force_login(world.auditor_a)
    page = client.get("/console/imports/").content.decode()
    assert 'type="file"' not in page
    assert client.post("/console/imports/", {"ministry": "alpha"}).status_code == 403
    assert AgentImportJob.objects.count() == 1


def test_errors_of_a_semicolon_file_are_read_cell_by_cell(
    client, world, django_capture_on_commit_callbacks
):
    """French Excel writes `;`: the error table's "line" cell holds the line number, not
    the whole raw row, and the address sits in a cell of its own."""
    import re

    client.force_login(world.admin_a)
    location = post_file(client, django_capture_on_commit_callbacks)["Location"]
    page = client.get(location).content.decode()
    body = page.split("<tbody>")[-1].split("</tbody>")[0]
    first_row = re.findall(r"<td>(.*?)</td>", body)[:4]
    assert first_row[0] == "3", first_row
    assert ";" not in "".join(first_row)
    assert "bad@nowhere.fr" in first_row
