"""Sessions in Redis (production's engine when CACHE_URL is set)."""

import pytest
from django.core.cache import caches
from django.test import override_settings

from controlplane.sessions import SessionStore
from tests.support.skips import requires_redis

REDIS_CACHE = {
    "default": {
        "BACKEND": "controlplane.cache.SharedClientRedisCache",
        "LOCATION": "redis://127.0.0.1:6379/12",
        "KEY_PREFIX": "tests-sessions",
    }
}

pytestmark = [requires_redis, pytest.mark.django_db]


@pytest.fixture
def redis_sessions():
    with override_settings(CACHES=REDIS_CACHE, SESSION_ENGINE="controlplane.sessions"):
        caches["default"].clear()
        yield caches["default"]
        caches["default"].clear()


def test_new_session_is_written_under_a_fresh_key(redis_sessions):
    """A new session gets a 32-character key and its data lands in Redis."""
    session = SessionStore()
    session["state"] = "abc"
    session.save()
    assert len(session.session_key) == 32
    assert SessionStore(session.session_key)["state"] == "abc"


def test_cycle_key_moves_the_data_and_kills_the_old_key(redis_sessions):
    """At login the data moves to a new key; the old key no longer opens anything."""
    session = SessionStore()
    session["state"] = "abc"
    session.save()
    old_key = session.session_key
    session.cycle_key()
    session["_auth_user_id"] = "42"
    session.save()
    assert session.session_key != old_key
    assert not SessionStore(old_key).exists(old_key)
    reloaded = SessionStore(session.session_key)
    assert reloaded["state"] == "abc" and reloaded["_auth_user_id"] == "42"


def test_the_cache_client_is_shared(redis_sessions):
    """One redis client per pool, not one per operation."""
    client = redis_sessions._cache
    assert client.get_client(write=True) is client.get_client(write=True)


DEAD_CACHE = {
    "default": {
        "BACKEND": "controlplane.cache.SharedClientRedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        "OPTIONS": {"socket_connect_timeout": 0.2},
    }
}


@pytest.mark.parametrize(
    ("path", "language", "content_type", "message"),
    [
        ("/api/v1/rooms/", "en", "application/json", "The service is briefly unavailable"),
        ("/api/v1/rooms/", "fr", "application/json", "Le service est momentanément"),
        ("/console/", "fr", "text/plain", "Le service est momentanément"),
    ],
)
def test_redis_unreachable_is_a_retryable_503_not_a_logout(path, language, content_type, message):
    """Sessions in Redis and Redis down: 503 with Retry-After, never anonymous or a 500."""
    from django.test import Client

    with override_settings(CACHES=DEAD_CACHE, SESSION_ENGINE="controlplane.sessions"):
        client = Client(HTTP_ACCEPT_LANGUAGE=language)
        client.cookies["sessionid"] = "a" * 32
        answer = client.get(path)
        assert answer.status_code == 503 and answer["Retry-After"] == "5"
        assert answer["Content-Type"].startswith(content_type)
        assert message in answer.content.decode()
        if content_type == "application/json":
            assert answer.json()["code"] == "session_store_unavailable"
        # Without a session cookie nothing is read: anonymous pages still answer.
        assert Client().get("/healthz").status_code == 200


def test_a_session_read_failing_later_is_still_a_503(redis_sessions, monkeypatch):
    """Redis gone between the guard and the read: DRF answers 503 with Retry-After."""
    from rest_framework.exceptions import APIException

    from controlplane.sessions import SessionStoreUnavailable

    assert issubclass(SessionStoreUnavailable, APIException)
    session = SessionStore()
    session["state"] = "abc"
    session.save()
    import redis

    def down(*args, **kwargs):
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(redis_sessions, "get", down)
    with pytest.raises(SessionStoreUnavailable):
        SessionStore(session.session_key)["state"]
