"""Import jobs report their progress as they go, and two imports never overbook a pool."""

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils import translation

import licensing.services
from accounts import tasks
from accounts.models import Agent, AgentImportJob, Role
from accounts.tasks import JobProgress, agent_import_job_run
from audit.models import AuditEvent
from tests.factories import AgentFactory, AgentImportJobFactory, MinistryFactory, grant
from tests.support.clients import client_as


def csv_of(ministry, count: int, prefix: str = "new") -> bytes:
    lines = ["email;prenom;nom"]
    lines += [f"{prefix}{i}@{ministry.code}.gouv.fr;Prénom{i};Nom{i}" for i in range(count)]
    return ("\n".join(lines) + "\n").encode()


def job_for(ministry, admin, content: bytes, *, apply: bool = True) -> AgentImportJob:
    """A pending job, as the upload leaves it (its task is run by the test)."""
    return AgentImportJobFactory(
        ministry=ministry, created_by=admin, content=content, filename="a.csv", apply=apply
    )


@pytest.mark.django_db
def test_rows_done_reaches_rows_total_through_the_api(world, django_capture_on_commit_callbacks):
    """A finished preview has rows_done == rows_total, and the API shows both."""
    client = client_as(world.admin_a)
    content = csv_of(world.a, 5) + b"bad@nowhere.fr;X;Y\n"
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/agent-imports/",
            {"ministry": "alpha", "file": SimpleUploadedFile("a.csv", content)},
            format="multipart",
        )
    assert response.status_code == 202, response.json()
    body = client.get(f"/api/v1/agent-imports/{response.json()['id']}/").json()
    assert body["state"] == "done"
    assert body["rows_total"] == 6 and body["rows_done"] == 6


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("apply", [False, True])
def test_progress_is_visible_outside_the_import_while_it_runs(monkeypatch, apply):
    """With a threshold of one row, every row is written; another connection sees each
    value rise while the all-or-nothing import is still running, and it ends at the total."""
    ministry = MinistryFactory()
    admin = grant(AgentFactory(ministry=ministry), Role.MINISTRY_ADMIN, ministry)
    existing = AgentFactory(ministry=ministry)
    content = (
        csv_of(ministry, 6)
        + f"{existing.email};{existing.given_name};{existing.usual_name}\n".encode()
        + b"bad@nowhere.fr;X;Y\n"
    )
    job = job_for(ministry, admin, content, apply=apply)
    monkeypatch.setattr(tasks, "PROGRESS_ROWS", 1)
    monkeypatch.setattr(tasks, "PROGRESS_SECONDS", 3600)
    observer = connections.create_connection(DEFAULT_DB_ALIAS)
    seen = []
    real_write = JobProgress.write

    def write_and_look(self):
        real_write(self)
        with observer.cursor() as cursor:
            cursor.execute(
                "SELECT rows_done, rows_total FROM accounts_agentimportjob WHERE id = %s",
                [job.pk],
            )
            seen.append(cursor.fetchone())

    monkeypatch.setattr(JobProgress, "write", write_and_look)
    try:
        assert agent_import_job_run(str(job.pk)) == "done"
    finally:
        observer.close()
    job.refresh_from_db()
    assert job.rows_total == 8 and job.rows_done == 8
    assert job.counts == {"create": 6, "update": 0, "unchanged": 1, "deactivate": 0, "error": 1}
    assert all(total == 8 for _done, total in seen)
    done = [d for d, _total in seen]
    if apply:
        # Rows that write are finished once written: planning finishes the other two,
        # then the batch of six creations is written.
        assert done == [1, 2, 8]
        assert Agent.objects.filter(ministry=ministry).count() == 8
    else:
        assert done == [1, 2, 3, 4, 5, 6, 7, 8]


def test_progress_writes_are_throttled(monkeypatch):
    """Rows arriving fast are written at most once per interval, plus every N rows."""
    clock = [100.0]
    monkeypatch.setattr(tasks.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(tasks, "PROGRESS_ROWS", 1000)
    writes = []
    monkeypatch.setattr(JobProgress, "write", lambda self: writes.append(self.done))
    progress = JobProgress("00000000-0000-0000-0000-000000000001", apply=False)
    progress._written_at = clock[0]
    for _ in range(999):  # fast: no time passes, fewer rows than the threshold
        progress.applied(1)
    assert writes == []
    clock[0] += 0.6
    progress.applied(1)
    assert writes == [1000]
    progress._written_at = clock[0]
    progress._written_done = progress.done
    for _ in range(1000):
        progress.applied(1)
    assert writes == [1000, 2000]


@pytest.mark.django_db(transaction=True)
def test_two_imports_at_once_never_exceed_the_pool(monkeypatch):
    """Two jobs of 8 new agents each, run at the same moment against 10 free seats: one
    creates its 8, the other fails cleanly on seats and writes nothing."""
    ministry = MinistryFactory()
    ministry.licence_pools.update(seats=10)
    operator = grant(AgentFactory(ministry=None, email="op@numerique.gouv.fr"), Role.OPERATOR)
    jobs = [
        job_for(ministry, operator, csv_of(ministry, 8, prefix="first")),
        job_for(ministry, operator, csv_of(ministry, 8, prefix="second")),
    ]
    # Both imports reach the seat check together, each inside its own transaction.
    both_there = threading.Barrier(2, timeout=20)
    real_reserve = licensing.services.seat_reserve

    def reserve_together(**kwargs):
        both_there.wait()
        return real_reserve(**kwargs)

    monkeypatch.setattr(licensing.services, "seat_reserve", reserve_together)
    outcomes, crashes = {}, []

    def run(job):
        try:
            with translation.override("en"):
                outcomes[job.pk] = agent_import_job_run(str(job.pk))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            crashes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not crashes, crashes
    assert sorted(outcomes.values()) == ["done", "failed"]
    active = Agent.objects.filter(ministry=ministry, is_active=True)
    assert active.count() == 8 <= 10
    winner = AgentImportJob.objects.get(state="done")
    loser = AgentImportJob.objects.get(state="failed")
    assert winner.counts["create"] == 8 and winner.rows_done == 8
    assert "seats" in loser.failure and "10" in loser.failure
    prefix = "first" if winner.pk == jobs[0].pk else "second"
    assert all(email.startswith(prefix) for email in active.values_list("email", flat=True))
    assert AuditEvent.objects.filter(action="agent.import").count() == 1


@pytest.mark.django_db
def test_upload_just_over_a_lowered_limit_is_refused(world, settings):
    """One byte over AGENT_IMPORT_MAX_BYTES: 413 with the size in the message, no job,
    no agent, no audit event."""
    settings.AGENT_IMPORT_MAX_BYTES = 2_000_000
    content = b"email\n" + b"x" * (2_000_000 - 5)
    assert len(content) == settings.AGENT_IMPORT_MAX_BYTES + 1
    before = (Agent.objects.count(), AuditEvent.objects.count())
    response = client_as(world.admin_a).post(
        "/api/v1/agent-imports/",
        {"ministry": "alpha", "apply": True, "file": SimpleUploadedFile("big.csv", content)},
        format="multipart",
    )
    assert response.status_code == 413
    assert response.json()["file"] == ["The file is 2 MB; the limit is 2 MB."]
    assert not AgentImportJob.objects.exists()
    assert (Agent.objects.count(), AuditEvent.objects.count()) == before


@pytest.mark.django_db
def test_a_200_mb_upload_is_refused_before_its_body_is_read(world):
    """A 200 MB request (with the default 50 MB limit) gets 413 and a size message from
    its announced length alone; nothing is written."""
    client = client_as(world.admin_a)
    response = client.generic(
        "POST",
        "/api/v1/agent-imports/",
        b"--x--\r\n",  # the rest of the 200 MB never needs to be sent
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(200 * 1_000_000),
    )
    assert response.status_code == 413
    assert response.json()["file"] == ["The file is 200 MB; the limit is 50 MB."]
    assert not AgentImportJob.objects.exists()
