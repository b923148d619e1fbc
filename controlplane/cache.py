"""Django's Redis cache, with one client object per connection pool.

Django builds a new ``redis.Redis`` for every cache operation; each one copies
the library's ~170 response callbacks, which costs more than the Redis round
trip itself. A client is thread-safe and cheap to share, so keep one per pool.
"""

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class SharedClientRedisCacheClient(RedisCacheClient):
    """Reuses the ``redis.Redis`` client of each connection pool."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class SharedClientRedisCache(RedisCache):
    """The Redis cache backend used for sessions and shared state."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = SharedClientRedisCacheClient
