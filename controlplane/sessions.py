"""Sessions in the shared cache, without Django's extra round trip per new session.

Django checks that a fresh random key is unused before writing it; the write
itself is an atomic "add" that fails on a collision (and is then retried), so
the check only costs a round trip on every login.
"""

from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.backends.cache import SessionStore as CacheSessionStore
from django.utils.crypto import get_random_string


class SessionStore(CacheSessionStore):
    """Cache-backed sessions whose new keys rely on the atomic add alone."""

    def _get_new_session_key(self):
        return get_random_string(32, VALID_KEY_CHARS)
