"""CSV imports through the API: a job row, run by a task, followed by its state."""

import pytest

from accounts.models import Agent, AgentImportJob
from tests.support.clients import client_as, client_with_token

pytestmark = pytest.mark.django_db


def test_preview_then_apply(world, upload):
    """A preview writes no agent; applying creates the valid rows; errors are downloadable."""
    client = client_as(world.admin_a)
    preview = upload(client)
    assert preview.status_code == 200, preview.json()
    body = preview.json()
    assert body["state"] == "done" and body["counts"]["create"] == 1
    assert body["counts"]["error"] == 1 and body["has_errors"] is True
    assert not Agent.objects.filter(email="anne@alpha.gouv.fr").exists()
    errors = client.get(f"/api/v1/agent-imports/{body['id']}/errors/")
    assert errors.status_code == 200
    text = errors.content.decode("utf-8-sig")
    assert "bad@nowhere.fr" in text and "not one of the ministry's" in text
    applied = upload(client, apply=True).json()
    assert applied["state"] == "done"
    assert Agent.objects.filter(email="anne@alpha.gouv.fr", ministry=world.a).exists()
    listed = client.get("/api/v1/agent-imports/").json()
    assert listed["count"] == 2 and "content" not in listed["results"][0]


def test_unreadable_file_fails_the_job_with_its_reason(world, upload):
    """An empty file: the job fails and says why."""
    body = upload(client_as(world.admin_a), content=b"   ").json()
    assert body["state"] == "failed" and "empty" in body["failure"]


def test_size_limit_gives_413(world, settings, upload):
    """Over AGENT_IMPORT_MAX_BYTES the upload is refused before anything is stored."""
    settings.AGENT_IMPORT_MAX_BYTES = 1_000_000
    response = upload(client_as(world.admin_a), content=b"email\n" + b"x" * 1_100_000)
    assert response.status_code == 413
    assert "limit is 1 MB" in str(response.json())
    assert not AgentImportJob.objects.exists()


@pytest.mark.parametrize("caller", ["admin_b", "auditor_a", "agent_a", "token_b"])
def test_nobody_else_imports_into_a(world, caller, upload):
    """Another ministry's admin or token, an auditor, an agent: refused, no job."""
    client = (
        client_with_token(world.admin_b, world.b, "ministry_admin")
        if caller == "token_b"
        else client_as(getattr(world, caller))
    )
    response = upload(client, apply=True)
    assert response.status_code in (400, 403)
    assert not AgentImportJob.objects.exists()


def test_jobs_of_a_are_invisible_to_b(world, upload):
    """B's admin neither lists nor opens A's import jobs."""
    job_id = upload(client_as(world.admin_a)).json()["id"]
    client = client_as(world.admin_b)
    assert client.get("/api/v1/agent-imports/").json()["count"] == 0
    assert client.get(f"/api/v1/agent-imports/{job_id}/").status_code == 404
    assert client.get(f"/api/v1/agent-imports/{job_id}/errors/").status_code == 404
