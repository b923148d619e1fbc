"""Shared fixtures: two ministries A and B and one caller of each kind."""

from dataclasses import dataclass

import pytest
from django.conf import settings
from django.utils import translation
from rest_framework.test import APIClient

from accounts.models import Role
from accounts.tokens import api_token_create
from audit.actor import Actor
from controlplane.celery import app as celery_app
from tests.factories import AgentFactory, MinistryFactory, grant

pytest_plugins = ["tests.oidc_fixtures"]

requires_redis = pytest.mark.skipif(
    not settings.REDIS_AVAILABLE, reason="Redis does not answer on 127.0.0.1:6379"
)


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


def client_as(user) -> APIClient:
    """An API client logged in with a session (as the console does), asking for English."""
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    if user is not None:
        client.force_login(user)
    return client


def client_with_token(admin, ministry, role: str) -> APIClient:
    """An API client carrying a fresh API token of ``ministry`` with ``role``."""
    _, clear = api_token_create(
        actor=Actor(user=admin, label="tests"), ministry=ministry, role=role, name="tests"
    )
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {clear}", HTTP_ACCEPT_LANGUAGE="en")
