"""Sessions in the shared cache, with fewer round trips per login.

Django checks that a fresh random key is unused before writing it, although the
write itself is an atomic "add" that fails on a collision (and is retried). And
at login it writes the session under its new key, then writes it again at the
end of the request. Here a new key costs no check, and a login writes once.

Redis unreachable is not "no session": Django's cache store would then treat every
agent as logged out. Here it raises ``SessionStoreUnavailable`` (503, Retry-After),
which ``SessionStoreGuard`` answers before any view runs.
"""

import redis
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.cache import SessionStore as CacheSessionStore
from django.http import HttpResponse, JsonResponse
from django.utils.crypto import get_random_string
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import APIException

RETRY_AFTER_SECONDS = 5


class SessionStoreUnavailable(APIException):
    """The session store (Redis) cannot be reached: try again in a few seconds."""

    status_code = 503
    default_detail = _("The service is briefly unavailable. Please try again in a few seconds.")
    default_code = "session_store_unavailable"
    wait = RETRY_AFTER_SECONDS  # DRF answers it as a Retry-After header


class SessionStore(CacheSessionStore):
    """Cache-backed sessions whose new keys rely on the atomic add alone."""

    def load(self):
        try:
            data = self._cache.get(self.cache_key)
        except redis.RedisError as exc:
            raise SessionStoreUnavailable() from exc
        except Exception:  # as Django's: a value that cannot be read is no session
            data = None
        if data is not None:
            return data
        self._session_key = None
        return {}

    def _get_new_session_key(self):
        return get_random_string(32, VALID_KEY_CHARS)

    def cycle_key(self):
        """New key for the same data (against session fixation); the old key is deleted
        now and the data is written once, by the session middleware, at the end."""
        data = self._get_session()
        old_key = self.session_key
        self._session_key = self._get_new_session_key()
        self._session_cache = data
        self.modified = True
        self._key_not_written = True
        if old_key:
            self.delete(old_key)

    def save(self, must_create=False):
        # A key from cycle_key is written with an atomic add, as a new session is.
        if getattr(self, "_key_not_written", False):
            must_create, self._key_not_written = True, False
        return super().save(must_create=must_create)


class SessionStoreGuard:
    """Reads a Redis session before anything else may: when Redis cannot be reached,
    the caller gets 503 with Retry-After (JSON on the API), not a logged-out page."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        session = getattr(request, "session", None)
        if isinstance(session, SessionStore) and session.session_key:
            try:
                session.keys()  # loads it now; later reads use what was loaded
            except SessionStoreUnavailable as exc:
                return unavailable(request, exc)
        return self.get_response(request)


def unavailable(request, exc: SessionStoreUnavailable) -> HttpResponse:
    if request.path_info.startswith("/api/"):
        body = {"detail": str(exc.detail), "code": exc.default_code}
        response = JsonResponse(body, status=503, json_dumps_params={"ensure_ascii": False})
    else:
        response = HttpResponse(str(exc.detail), status=503, content_type="text/plain")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
