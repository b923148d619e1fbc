"""Liveness and readiness probes."""

import pytest
from django.db.utils import OperationalError

from controlplane import health
from tests.support.skips import requires_redis


@pytest.mark.django_db
def test_healthz_answers_without_touching_anything(client, django_assert_num_queries):
    """Liveness runs no query: a slow database must not get the pod killed."""
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@requires_redis
@pytest.mark.django_db
def test_readyz_checks_the_real_database_and_broker(client):
    """With PostgreSQL and Redis up, the probe says ready and names both checks."""
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.django_db
def test_readyz_names_an_unreachable_broker(client, settings):
    """A broker that does not answer gives 503 with the broker named."""
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["broker"]
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("unreachable")


@pytest.mark.django_db
def test_readyz_names_an_unreachable_database(client, monkeypatch):
    """A database that does not answer gives 503 with the database named."""

    def refuse():
        raise OperationalError("connection refused")

    monkeypatch.setattr(health, "_check_database", refuse)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "database" in response.json()["failing"]
    assert "connection refused" not in response.content.decode(), "no internals leak"
