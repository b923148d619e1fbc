"""Redis (the broker) going away under a worker that is running a task: the worker
reconnects and takes work again once Redis is back, instead of stopping for good (the
Redis-restart test lost its worker this way, now and then, under load)."""

import contextlib
import time
from urllib.parse import urlsplit

import pytest
import redis
from celery.worker.consumer.consumer import COLLECT_SOCKET_TIMEOUT, bound_open_broker_sockets
from kombu import Connection, Exchange, Queue
from kombu.common import ignore_errors

from controlplane import broker
from controlplane.celery import app
from media_nodes import queueing
from media_nodes.tasks import room_allocate_drain
from tests.factories import MediaNodeFactory, RoomFactory
from tests.reliability.placement_locks import live, placement_waiting_on_a_lock, row_locked
from tests.reliability.processes import wait_for
from tests.workers import celery_worker, output

KOMBU_REDIS = "kombu.transport.redis:Transport"


def consuming(connection: Connection) -> Connection:
    """Bring ``connection`` where a worker's consumer holds it while it runs a task:
    the task's message delivered and not yet acknowledged (acks late), a BRPOP waiting
    for the next one, and a second channel listening on an auto-deleted fanout queue,
    as the worker's remote-control mailbox does."""
    tasks = Queue("allocation", Exchange("allocation"), "allocation")
    with connection.Producer() as producer:
        producer.publish(
            {"task": 1}, exchange=tasks.exchange, routing_key="allocation", declare=[tasks]
        )
    delivered = []
    consumer = connection.Consumer([tasks], callbacks=[lambda body, message: delivered.append(1)])
    consumer.qos(prefetch_count=2)  # a worker of concurrency 2
    consumer.consume()
    mailbox = Queue("control", Exchange("control", type="fanout"), auto_delete=True)
    connection.Consumer([mailbox], channel=connection.channel(), callbacks=[]).consume()
    # Until the task is delivered and nothing more comes (subscriptions confirmed): the
    # last BRPOP then stays in flight.
    deadline = time.monotonic() + 10
    quiet = False
    while not (delivered and quiet) and time.monotonic() < deadline:
        try:
            connection.drain_events(timeout=0.2)
            quiet = False
        except TimeoutError:
            quiet = True
    assert delivered and quiet and connection.default_channel._in_poll
    return connection


def worker_cleanup(connection: Connection) -> None:
    """What a worker's consumer does with its connection once it has seen it drop
    (``Consumer.on_connection_error_after_connected``): whatever this raises besides a
    connection error, Celery reports as "Unrecoverable error" and the worker stops."""
    bound_open_broker_sockets(connection, COLLECT_SOCKET_TIMEOUT)
    with contextlib.suppress(Exception):  # as Celery does
        connection.collect(socket_timeout=COLLECT_SOCKET_TIMEOUT)
    ignore_errors(connection, connection.close)


def test_the_apps_redis_urls_use_the_fixed_transport():
    """Connections of the app to redis:// and rediss:// brokers use the fixed transport,
    and rediss:// still means TLS."""
    for url in ("redis://127.0.0.1:6379/0", "rediss://:secret@redis.example:6380/0"):
        connection = app.connection_for_write(url)
        assert isinstance(connection.transport, broker.Transport), url
        assert bool(connection.ssl) is (urlsplit(url).scheme == "rediss")
        connection.release()


def test_a_workers_connection_to_a_dead_redis_closes_as_a_lost_connection(private_redis):
    """Redis killed while the worker runs a task: closing the connection is a
    connection error at worst (the worker reconnects), never anything else."""
    connection = consuming(app.connection_for_read(private_redis.url()))
    assert isinstance(connection.transport, broker.Transport)
    private_redis.kill()
    worker_cleanup(connection)  # raises nothing


def test_kombus_own_redis_transport_still_stops_the_worker_there(private_redis):
    """The kombu bug ``controlplane.broker`` works around, still there: when this test
    fails, kombu has fixed it, and ``controlplane/broker.py`` can go."""
    connection = consuming(Connection(private_redis.url(), transport=KOMBU_REDIS))
    private_redis.kill()
    with pytest.raises(AttributeError, match="hostname"):
        worker_cleanup(connection)


def drain_asked(url: str, slot: int) -> None:
    """Start a drainer through the broker at ``url`` (the test's own app is on another)."""
    with app.connection_for_write(url) as connection:
        room_allocate_drain.apply_async((slot,), connection=connection, ignore_result=True)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_running_a_task_when_redis_restarts_takes_work_again(world, private_redis):
    """Promise: Redis restarted while a worker runs a placement: the worker reconnects,
    finishes it, and places the rooms asked for afterwards (it does not stop)."""
    MediaNodeFactory(name="restart-node", capacity=100)
    held, later = (RoomFactory(slug=f"restart-{i}", name="r", owner=world.agent_a) for i in (1, 2))
    url = private_redis.url()
    env = {"CELERY_BROKER_URL": url, "CELERY_RESULT_BACKEND": url}
    with celery_worker(queues="allocation", concurrency=2, name="restart", env=env) as worker:
        with row_locked(held):
            redis.Redis.from_url(url).rpush(queueing.PENDING, f"{held.pk}||")
            drain_asked(url, slot=0)
            # The drainer's task runs (its message unacknowledged), waiting on the lock.
            assert wait_for(placement_waiting_on_a_lock, 60), output(worker)
            private_redis.kill()
            time.sleep(0.5)
            private_redis.start()
        # The lock is released: the drainer places the room it held.
        assert wait_for(lambda: live(held) == 1, 60), output(worker)[-3000:]

        redis.Redis.from_url(url).rpush(queueing.PENDING, f"{later.pk}||")
        drain_asked(url, slot=1)
        assert wait_for(lambda: live(later) == 1, 60), output(worker)[-3000:]
        assert worker.poll() is None
        assert "Unrecoverable error" not in output(worker)
