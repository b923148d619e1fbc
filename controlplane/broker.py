"""The broker's Redis transport: kombu's own, with a fix so that a worker survives
Redis going away while it runs tasks.

kombu 5.7's Redis channel, when closed with a BRPOP in flight, first reads that
BRPOP's reply (a message Redis popped meanwhile is then delivered, not lost). When
Redis itself is gone, that read raises a connection error before the channel is
marked closed. On a lost connection Celery's consumer ``collect()``s the connection,
which detaches the transport from it, then ``close()``s it: the channel, still open,
now tries to put its unacknowledged messages (the tasks running, acked late) back on
their queue through a new connection pool built from the detached connection, and
raises ``AttributeError: 'NoneType' object has no attribute 'hostname'``. Celery takes
that for a bug, not a lost connection: "Unrecoverable error", and the worker stops
consuming for good (seen in the Redis-restart test under load: the placement sweep's
tasks then wait in Redis for a worker that will never take them).

Here a channel closed on a dead connection gives up the BRPOP's reply (the connection
and the reply are gone), and a channel asked for a connection after its transport was
detached gets a connection error, which Celery recovers from: it reconnects.
``transport_register`` makes this transport the one of ``redis://`` and ``rediss://``
URLs (kombu's handling of ``rediss`` is kept: it goes by the URL's scheme).
"""

from __future__ import annotations

from functools import lru_cache
from queue import Empty

import redis
from django.conf import settings
from kombu import transport as kombu_transports
from kombu.transport import redis as kombu_redis

SCHEMES = ("redis", "rediss")


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, closing cleanly on a connection that is gone."""

    def close(self):
        if self._in_poll:
            try:
                self._brpop_read()  # what kombu's close does first, errors aside
            except Empty:
                pass
            except self.connection_errors:
                pass  # the connection died with the reply: nothing to read
        super().close()

    def _connparams(self, asynchronous=False):
        if self.connection.client is None:
            # The connection was closed (collected): a lost connection, not a bug.
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the channel above."""

    Channel = Channel


def transport_register() -> None:
    """Use this transport for ``redis://`` and ``rediss://`` broker URLs, in every
    connection made from now on (kombu resolves a URL's scheme through its aliases)."""
    path = f"{__name__}:Transport"
    for scheme in SCHEMES:
        kombu_transports.TRANSPORT_ALIASES[scheme] = path
        kombu_transports._transport_cache.pop(scheme, None)


@lru_cache(maxsize=4)
def _redis_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def broker_redis() -> redis.Redis:
    """A plain client of the broker's Redis (the placement queue, the queues' lengths),
    one per process and URL, with short timeouts: callers answer 503 or skip a figure
    rather than hang."""
    return _redis_for(settings.CELERY_BROKER_URL)
