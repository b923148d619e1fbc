"""Sessions in Redis (production's engine when CACHE_URL is set)."""

import pytest
from django.core.cache import caches
from django.test import override_settings

from controlplane.sessions import SessionStore
from tests.conftest import requires_redis

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
