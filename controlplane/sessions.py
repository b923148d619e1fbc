"""Sessions in the shared cache, with fewer round trips per login.

Django checks that a fresh random key is unused before writing it, although the
write itself is an atomic "add" that fails on a collision (and is retried). And
at login it writes the session under its new key, then writes it again at the
end of the request. Here a new key costs no check, and a login writes once.
"""

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.cache import SessionStore as CacheSessionStore
from django.utils.crypto import get_random_string


class SessionStore(CacheSessionStore):
    """Cache-backed sessions whose new keys rely on the atomic add alone."""

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
