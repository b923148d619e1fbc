"""Shared fixtures: two ministries A and B and one caller of each kind, and a CSV
upload through the API (the accounts and the metrics tests both send one)."""

from dataclasses import dataclass

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation

from accounts.models import Role
from controlplane.celery import app as celery_app
from tests.factories import AgentFactory, MinistryFactory, grant

pytest_plugins = ["tests.oidc_fixtures"]

# Two rows: one agent to create, one of a domain that is not the ministry's (an error).
IMPORT_CSV = "Courriel;Prénom;Nom\nanne@alpha.gouv.fr;Anne;Leroy\nbad@nowhere.fr;X;Y\n"


def pytest_terminal_summary(terminalreporter):
    """Say which PostgreSQL the suite ran on (the notice printed while the settings load
    is captured by pytest)."""
    terminalreporter.write_line(f"database: {settings.TEST_DATABASE_SOURCE}")


@pytest.fixture(autouse=True)
def english_outside_requests():
    """Services called directly speak the default language (French); tests read their
    messages in English. Requests still choose their own language (console: French)."""
    with translation.override("en"):
        yield


@pytest.fixture(autouse=True)
def eager_celery(request):
    """Unit tests run tasks inline; integration tests talk to a real worker."""
    if request.node.get_closest_marker("integration"):
        yield
        return
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Rate-limit counters live in the cache: each test starts with none (the tests'
    cache is per process, LocMem; a shared Redis cache is never flushed here)."""
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache

    if isinstance(caches["default"], LocMemCache):
        caches["default"].clear()
    yield


@dataclass
class World:
    """Two ministries and every kind of caller around them."""

    a: object
    b: object
    operator: object
    national_auditor: object
    admin_a: object
    admin_b: object
    auditor_a: object
    agent_a: object
    agent_b: object


@pytest.fixture
def world(db) -> World:
    a = MinistryFactory(code="alpha")
    b = MinistryFactory(code="bravo")
    return World(
        a=a,
        b=b,
        operator=grant(AgentFactory(ministry=None, email="op@numerique.gouv.fr"), Role.OPERATOR),
        national_auditor=grant(
            AgentFactory(ministry=None, email="audit@numerique.gouv.fr"), Role.AUDITOR
        ),
        admin_a=grant(AgentFactory(ministry=a), Role.MINISTRY_ADMIN, a),
        admin_b=grant(AgentFactory(ministry=b), Role.MINISTRY_ADMIN, b),
        auditor_a=grant(AgentFactory(ministry=a), Role.AUDITOR, a),
        agent_a=AgentFactory(ministry=a),
        agent_b=AgentFactory(ministry=b),
    )


@pytest.fixture
def upload(django_capture_on_commit_callbacks):
    """POST a file, let the job's task run (eager, once the request commits), reread it."""

    def post(client, apply=False, content=IMPORT_CSV.encode("cp1252"), ministry="alpha"):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                "/api/v1/agent-imports/",
                {
                    "ministry": ministry,
                    "apply": apply,
                    "file": SimpleUploadedFile("agents.csv", content, content_type="text/csv"),
                },
                format="multipart",
            )
        if response.status_code != 202:
            return response
        assert response.json()["state"] == "pending"
        return client.get(f"/api/v1/agent-imports/{response.json()['id']}/")

    return post
